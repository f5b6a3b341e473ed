"""PCD: follow the primary task's gradient, guaranteeing each other task a share of progress."""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.methods._common import read_extra_state
from mtlkit.balancing.options import check_number, check_numbers
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.gramian import check_gramian, work_dtype
from mtlkit.balancing.solvers.min_norm import min_norm_point
from mtlkit.balancing.solvers.nonneg_qp import solve_nonneg_qp

_DEPENDENCE = 1e-9
"""Floor of the relative size below which a combination of gradients counts as zero."""


@register("pcd")
class PCD(GramianWeighting):
    """PCD: the step closest to the primary gradient that gives every other task a fraction τ.

    Varam et al., "Not All Objectives Are Born Equal: Priority-Constrained Descent for
    Hierarchical Multi-Objective Optimization", TMLR 2026 (arXiv:2606.29521); torchjd's ``PCD``.

    Task 1 (the first loss) is the primary objective. With g̃ᵢ = sᵢgᵢ the gradients normalised by
    sᵢ = 1/√(v̂ᵢ + ε), v̂ᵢ the bias-corrected moving average (decay β) of ‖gᵢ‖² over the steps::

        d̃ = argmin_d ½‖d − g̃₁‖²   s.t.   g̃ⱼᵀd ≥ τⱼ‖g̃ⱼ‖²,  j = 2..K

    and d = d̃·‖g₁‖/‖d̃‖. By the KKT conditions d̃ = g̃₁ + Σⱼ μⱼg̃ⱼ with μ ≥ 0 the minimiser of the
    dual, a non-negative QP on the normalised Gramian H = G̃₂:,₂: (solved here by the interior
    point of ``solvers.nonneg_qp``, in float64)::

        μ = argmin_{μ ≥ 0} ½μᵀHμ − bᵀμ,   bⱼ = τⱼ‖g̃ⱼ‖² − g̃ⱼᵀg̃₁

    Special cases, as in the paper and torchjd: g₁ = 0 gives d = 0; constraints that cannot hold
    together (some μ ≥ 0 with Σμⱼg̃ⱼ = 0 on tasks with τⱼ‖g̃ⱼ‖² > 0, by Farkas' lemma; detected
    with the min-norm point of those normalised gradients) are dropped, d = g₁; a d̃ that is 0 up
    to the Gramian's rounding gives d = 0; a non-finite Gramian gives NaN weights and leaves the
    moving average alone. The moving average is in ``state_dict()``.

    Difference from torchjd: it solves the same QP exactly with Goldfarb & Idnani's dual
    active-set method; the interior point here reaches the same d̃ (unique) to its tolerance,
    1e-12 relative, but where the gradients are linearly dependent μ itself is not unique.

    Args:
        tau: τ in [0, 1], the guaranteed fraction of normalised first-order progress: one number
            for every secondary task or one per secondary task (K − 1 of them). Default 0.02.
        beta: β in [0, 1), the decay of the moving average of ‖gᵢ‖² (default 0.999).
        eps: ε ≥ 0, added to the moving average before its inverse square root (default 1e-8).
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        tau: float | list[float] = 0.02,
        beta: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(num_tasks)
        if isinstance(tau, numbers.Real):
            self.tau: float | list[float] = check_number("pcd", "tau", tau, low=0.0, high=1.0)
        else:
            self.tau = check_numbers("pcd", "tau", tau, low=0.0, high=1.0)
            if num_tasks is not None and len(self.tau) != num_tasks - 1:
                raise ValueError(
                    f"pcd: tau has {len(self.tau)} entries; give one per secondary task "
                    f"({num_tasks - 1}) or a single number."
                )
        self.beta = check_number("pcd", "beta", beta, low=0.0, high=1.0, high_inclusive=False)
        self.eps = check_number("pcd", "eps", eps, low=0.0)
        self.sq_norm_avg: Tensor | None = None
        self.steps = 0

    def _taus(self, k: int, like: Tensor) -> Tensor:
        if isinstance(self.tau, float):
            return torch.full((k - 1,), self.tau, dtype=like.dtype, device=like.device)
        if len(self.tau) != k - 1:
            raise ValueError(
                f"pcd: tau has {len(self.tau)} entries but got {k - 1} secondary tasks."
            )
        return torch.tensor(self.tau, dtype=like.dtype, device=like.device)

    def _scales(self, sq_norms: Tensor) -> Tensor:
        """Update the moving average with ``sq_norms``; the normalising factors sᵢ."""
        k = sq_norms.shape[0]
        if self.sq_norm_avg is None or self.sq_norm_avg.shape != (k,):
            self.sq_norm_avg, self.steps = torch.zeros_like(sq_norms), 0
        avg = self.beta * self.sq_norm_avg.to(sq_norms) + (1.0 - self.beta) * sq_norms
        self.sq_norm_avg, self.steps = avg, self.steps + 1
        root = (avg / (1.0 - self.beta**self.steps) + self.eps).sqrt()
        return torch.where(root > 0, 1.0 / torch.where(root > 0, root, 1.0), 0.0)

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = check_gramian(gramian)
        self._check_num_tasks(k)
        g = gramian.detach().to(work_dtype(gramian.device))
        g = 0.5 * (g + g.T)
        taus = self._taus(k, g)
        if not torch.isfinite(g).all():
            return torch.full((k,), torch.nan, dtype=gramian.dtype, device=gramian.device)
        sq_norms = g.diagonal().clamp(min=0.0)
        scales = self._scales(sq_norms)
        zero = torch.zeros(k, dtype=gramian.dtype, device=gramian.device)
        if not sq_norms[0] > 0:
            return zero
        normalized = g * scales[:, None] * scales[None, :]
        precision = max(_DEPENDENCE, 10.0 * torch.finfo(gramian.dtype).eps)
        w = _primary_weights(normalized, taus, precision)
        sq_size = w @ normalized @ w
        magnitude = (w.abs() @ normalized.diagonal().clamp(min=0.0).sqrt()) ** 2
        if not sq_size > precision * magnitude:
            return zero
        return (w * scales * (sq_norms[0] / sq_size).sqrt()).to(gramian.dtype)

    def get_extra_state(self) -> dict[str, Any]:
        return {"sq_norm_avg": self.sq_norm_avg, "steps": self.steps}

    def set_extra_state(self, state: Any) -> None:
        state = read_extra_state("pcd", state, ("sq_norm_avg", "steps"))
        self.sq_norm_avg, self.steps = state["sq_norm_avg"], int(state["steps"])


def _primary_weights(gramian: Tensor, taus: Tensor, precision: float) -> Tensor:
    """``[1, μ₂, …, μ_K]`` for the normalised Gramian: d̃ = g̃₁ + Σ μⱼg̃ⱼ; ``[1, 0, …]`` where the
    constraints are infeasible."""
    k = gramian.shape[0]
    weights = torch.zeros(k, dtype=gramian.dtype, device=gramian.device)
    weights[0] = 1.0
    if k == 1:
        return weights
    secondary = gramian[1:, 1:]
    demand = taus * secondary.diagonal()
    binding = demand > 0
    if binding.any():
        sub = secondary[binding][:, binding]
        r = min_norm_point(sub)
        if r @ sub @ r <= precision * (r @ sub.diagonal().sqrt()) ** 2:
            return weights  # some μ ≥ 0 cancels the binding gradients: infeasible (Farkas)
    b = demand - gramian[1:, 0]
    weights[1:] = solve_nonneg_qp(secondary, -b).clamp(min=0.0)
    return weights
