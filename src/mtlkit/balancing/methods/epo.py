"""EPO, exact Pareto optimal search (Mahapatra & Rajan, 2020): descent that lands on a
preference's ray."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.options import check_number, check_weights
from mtlkit.balancing.registry import register


@register("epo")
class EPO(GramianWeighting):
    """EPO: the update that moves the losses onto a preference ray r, then along it.

    Mahapatra, Rajan. "Multi-Task Learning with User Preferences: Gradient Descent with
    Controlled Ascent in Pareto Optimization." ICML 2020.

    With the losses l, the relative losses l̂ = r⊙l / Σ r⊙l, their non-uniformity
    μ = KL(l̂ ‖ 1/K) and the adjustment a = r⊙(log(K·l̂) − μ), the weights β (on the simplex) of
    the update d = Σ βₖgₖ solve a linear programme over the Gramian C:

    * off the ray (μ > ``tolerance``): maximise aᵀCβ (the first-order decrease of μ), with
      (Cβ)ⱼ ≥ 0 for the tasks of largest rⱼlⱼ (they may not get worse) and (Cβ)ⱼ ≥ (Ca)ⱼ for
      the tasks whose (Ca)ⱼ ≤ 0;
    * on the ray: maximise Σ Cβ subject to Cβ ≥ 0 (a descent direction for every task).

    A constraint set with no solution is dropped (the simplex alone remains). The programme is
    solved exactly by visiting the vertices of its polytope: C(2K, K−1) small systems, cheap for
    the few tasks of a preference front (K ≤ 8). Without ``preference`` the ray is the uniform
    one; a preference-conditioned model's training sets it for every batch
    (:meth:`set_preference`: PHN-EPO).

    Args:
        preference: one number ≥ 0 per task (normalised to sum 1).
        tolerance: the non-uniformity μ below which the losses count as on the ray.
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        preference: Sequence[float] | None = None,
        tolerance: float = 1e-4,
    ) -> None:
        if preference is not None:
            values = check_weights("epo", "preference", preference)
            if num_tasks is not None and len(values) != num_tasks:
                raise ValueError(
                    f"epo: preference has {len(values)} entries but there are {num_tasks} tasks."
                )
            num_tasks = len(values)
        super().__init__(num_tasks=num_tasks)
        self.tolerance = check_number("epo", "tolerance", tolerance, low=0.0)
        ray = torch.tensor(values) if preference is not None else torch.ones(num_tasks or 0)
        self.register_buffer("preference", ray / ray.sum() if ray.numel() else ray)

    def set_preference(self, preference: Tensor) -> None:
        """Follow the ray of ``preference`` from the next step on."""
        self.preference = preference.detach().to(self.preference.device, torch.float32).clone()

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        if losses is None:
            raise ValueError("epo reads the loss values; the engine passes them.")
        k = gramian.shape[0]
        ray = self.preference if self.preference.numel() == k else torch.full((k,), 1.0 / k)
        weights = epo_weights(
            gramian.double(), losses.detach().double(), ray.double(), self.tolerance
        )
        return weights.to(gramian.dtype)


def epo_weights(gramian: Tensor, losses: Tensor, ray: Tensor, tolerance: float) -> Tensor:
    """EPO's β for the (K, K) ``gramian``, the (K,) ``losses`` and the preference ``ray``."""
    k = gramian.shape[0]
    weighted = (ray * losses).clamp(min=torch.finfo(losses.dtype).tiny)
    relative = weighted / weighted.sum()
    log_ratio = torch.log(relative * k)
    mu = (relative * log_ratio).sum()
    if float(mu) > tolerance:
        adjustment = ray * (log_ratio - mu)
        ca = gramian @ adjustment
        bounds = torch.where(ca > 0, -torch.inf, ca)
        bounds = torch.where(weighted == weighted.max(), torch.zeros_like(ca), bounds)
        return _simplex_lp(ca, gramian, bounds)
    return _simplex_lp(gramian.sum(dim=0), gramian, torch.zeros(k, dtype=gramian.dtype))


def _simplex_lp(objective: Tensor, rows: Tensor, bounds: Tensor) -> Tensor:
    """argmax objectiveᵀβ over β ≥ 0, Σβ = 1, rows·β ≥ bounds (a row with bound −inf is free);
    without a feasible point, over the simplex alone. Exact: the best feasible vertex."""
    k = objective.numel()
    kept = torch.isfinite(bounds)
    a = torch.cat([torch.eye(k, dtype=rows.dtype), rows[kept]])  # a·β ≥ b
    b = torch.cat([torch.zeros(k, dtype=rows.dtype), bounds[kept]])
    best = _best_vertex(objective, a, b)
    if best is None:
        best = _best_vertex(objective, a[:k], b[:k])
    assert best is not None  # the simplex's own vertices are always feasible
    return best


def _best_vertex(objective: Tensor, a: Tensor, b: Tensor) -> Tensor | None:
    """The feasible vertex of {β: aβ ≥ b, Σβ = 1} with the largest objective, or None."""
    k = objective.numel()
    scale = max(1.0, float(a.abs().max()))
    slack = 1e-9 * scale
    best, best_value = None, -torch.inf
    ones = torch.ones(1, k, dtype=a.dtype)
    for active in itertools.combinations(range(a.shape[0]), k - 1):
        system = torch.cat([ones, a[list(active)]])
        if torch.linalg.matrix_rank(system) < k:
            continue
        rhs = torch.cat([torch.ones(1, dtype=a.dtype), b[list(active)]])
        beta = torch.linalg.solve(system, rhs)
        if bool((a @ beta >= b - slack).all()):
            value = float(objective @ beta)
            if value > best_value:
                best, best_value = beta.clamp(min=0), value
    return None if best is None else best / best.sum()
