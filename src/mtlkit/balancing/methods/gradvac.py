"""GradVac (Wang et al., 2021): steer each pair of task gradients towards an EMA similarity goal."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.methods._common import _SeededRandomness, random_orders
from mtlkit.balancing.options import check_number, require_num_tasks
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.gramian import check_gramian, work_dtype


def gradvac_coefficients(
    gramian: Tensor, orders: Tensor, targets: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    """One GradVac step on the Gramian.

    Args:
        gramian: the (K, K) Gramian ``G = J Jᵀ``.
        orders: (K, S) indices; row i lists the tasks j visited for task i, in order.
        targets: the (K, K) EMA similarity goals φ̂ (entry [i, j] for the ordered pair i, j).
        beta: the EMA rate.

    Returns:
        ``(C, new_targets)``: C (K, K) with ``g_i^PC = Σ_k C[i, k] g_k`` (the direction is
        ``C.sum(0) @ J``), and the updated goals. All tasks advance one visit at a time together:
        row i of C and row i of φ̂ depend on task i's visits only, so this equals the paper's loop.
    """
    k = gramian.shape[0]
    coefficients = torch.eye(k, dtype=gramian.dtype, device=gramian.device)
    targets = targets.clone()
    rows = torch.arange(k, device=gramian.device)
    norms = gramian.diagonal().clamp(min=0).sqrt()
    for step in range(orders.shape[1]):
        j = orders[:, step]
        cg = coefficients @ gramian  # (C G)[i, l] = g_i^PC · g_l
        dots = cg[rows, j]
        norm_i = (cg * coefficients).sum(dim=1).clamp(min=0).sqrt()  # ‖g_i^PC‖
        norm_j = norms[j]
        denom = norm_i * norm_j
        phi = torch.where(denom > 0, dots / torch.where(denom > 0, denom, 1), 0).clamp(-1, 1)
        goal = targets[rows, j]
        sin_phi = (1 - phi * phi).clamp(min=0).sqrt()
        sin_goal = (1 - goal * goal).clamp(min=0).sqrt()
        # g_i^PC += ‖g_i^PC‖ (φ̂ √(1−φ²) − φ √(1−φ̂²)) / (‖g_j‖ √(1−φ̂²)) g_j   when φ < φ̂
        denom_w = norm_j * sin_goal
        apply = (phi < goal) & (denom_w > 0)
        w = norm_i * (goal * sin_phi - phi * sin_goal) / torch.where(apply, denom_w, 1)
        coefficients[rows, j] = coefficients[rows, j] + torch.where(apply, w, 0)
        targets[rows, j] = (1 - beta) * goal + beta * phi
    return coefficients, targets


@register("gradvac")
class GradVac(_SeededRandomness, GramianWeighting):
    """GradVac: raise each pair's gradient cosine to an EMA goal (generalises PCGrad); sum.

    Wang, Tsvetkov, Firat, Cao. "Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models." ICLR 2021 (Algorithm 1).

    For every task i, ``g_i^PC = g_i``; for each other task j in a random order, with
    ``φ_ij = g_i^PC·g_j / (‖g_i^PC‖ ‖g_j‖)`` and the goal φ̂_ij:

        if φ_ij < φ̂_ij:  g_i^PC ← g_i^PC
            + ‖g_i^PC‖ (φ̂_ij √(1−φ_ij²) − φ_ij √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²)) · g_j
        φ̂_ij ← (1−β) φ̂_ij + β φ_ij          (every visit; φ̂ starts at 0)

    and the update is ``Σ_i g_i^PC``. With φ̂ = 0 the correction is exactly PCGrad's projection.

    Choices: this is the *whole-model* variant (one goal per ordered task pair, over all shared
    parameters; LibMTL's ``group_type=0``, torchjd's default). The paper applies it per layer
    (a goal per pair and layer); the Gramian interface sees only whole-model dot products, so the
    per-layer variant is not offered. LibMTL and torchjd add 1e-8 to the denominators; here a zero
    denominator skips the correction instead (no absolute epsilon, so the result does not depend
    on the gradients' scale), and a goal of exactly ±1 (√(1−φ̂²) = 0) is skipped. The goals are
    updated on every visit, as in the paper's algorithm and torchjd (some LibMTL versions update
    them only when correcting). Random orders come from the method's own seeded generator.
    The goals φ̂ are the ``targets`` buffer (in the module's dtype, float32 unless ``.double()``,
    and on the Gramian's device) and the generator state is extra state: both travel in
    ``state_dict()``.

    Args:
        beta: EMA rate of the goals φ̂, in [0, 1]; 0.01 as in the paper's experiments (LibMTL
            and torchjd default to 0.5; pass ``beta=0.5`` to match them).
        seed: seed of the generator for the random task orders.
    """

    def __init__(self, num_tasks: int | None = None, *, beta: float = 0.01, seed: int = 0) -> None:
        super().__init__(num_tasks=num_tasks)
        k = require_num_tasks("gradvac", num_tasks, "an EMA similarity goal per pair of tasks")
        self.beta = check_number("gradvac", "beta", beta, low=0.0, high=1.0)
        self._init_randomness(seed)
        self.register_buffer("targets", torch.zeros(k, k))

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = check_gramian(gramian)
        self._check_num_tasks(k)
        work = gramian.detach().to(work_dtype(gramian.device))
        orders = random_orders(k, self._generator(work.device), work.device)
        targets = self.targets.to(dtype=work.dtype, device=work.device)
        coefficients, new_targets = gradvac_coefficients(work, orders, targets, self.beta)
        # The goals keep the buffer's dtype (the module's: float32 unless .double()), so that a
        # checkpoint restores them bit for bit; they follow the Gramian's device (no host copy).
        self.targets = new_targets.to(dtype=self.targets.dtype)
        return coefficients.sum(dim=0).to(gramian.dtype)
