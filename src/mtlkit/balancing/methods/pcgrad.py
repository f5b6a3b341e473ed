"""PCGrad (Yu et al., 2020): project each task gradient off the gradients it conflicts with."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.methods._common import _SeededRandomness, random_orders
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.gramian import check_gramian, work_dtype


def pcgrad_coefficients(gramian: Tensor, orders: Tensor) -> Tensor:
    """PCGrad's projected gradients as combinations of the original ones, read off the Gramian.

    Args:
        gramian: the (K, K) Gramian ``G = J Jᵀ``.
        orders: (K, S) indices; row i lists the tasks j that task i is projected against, in
            order (S = K-1 for the full method, fewer to stop early).

    Returns:
        C (K, K) with ``g_i^PC = Σ_k C[i, k] g_k``; the PCGrad direction is ``C.sum(0) @ J``.
        ``g_i^PC · g_j = (C G)[i, j]``, so every projection needs dot products only. All tasks
        advance one step at a time together (their rows of C are independent), which gives the
        same result as the paper's loop over i and keeps the loop length K-1.
    """
    k = gramian.shape[0]
    coefficients = torch.eye(k, dtype=gramian.dtype, device=gramian.device)
    rows = torch.arange(k, device=gramian.device)
    squared_norms = gramian.diagonal()
    for step in range(orders.shape[1]):
        j = orders[:, step]
        # g_i^PC · g_j = Σ_k C[i, k] G[k, j]   (G symmetric, so G[j] is column j)
        dots = (coefficients * gramian[j]).sum(dim=1)
        norms_j = squared_norms[j]
        conflict = (dots < 0) & (norms_j > 0)
        shift = torch.where(conflict, dots / torch.where(norms_j > 0, norms_j, 1), 0)
        coefficients[rows, j] = coefficients[rows, j] - shift
    return coefficients


@register("pcgrad")
class PCGrad(_SeededRandomness, GramianWeighting):
    """PCGrad: project each task gradient off the others it conflicts with, in random order; sum.

    Yu, Kumar, Gupta, Levine, Hausman, Finn. "Gradient Surgery for Multi-Task Learning."
    NeurIPS 2020 (Algorithm 1).

    For every task i, ``g_i^PC = g_i``; then for each other task j in a random order,
    if ``g_i^PC · g_j < 0``:

        g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j

    (projections are onto the *original* g_j), and the update is ``Σ_i g_i^PC``, the sum (as in the
    paper and LibMTL). Written on the Gramian: every g_i^PC is tracked as coefficients on the
    original gradients, so the direction is ``wᵀJ`` with ``w = Σ_i C[i]``. Zero gradients are never
    projected against; two non-conflicting (or orthogonal) gradients pass through unchanged.

    The random orders come from the method's own generator (seeded by ``seed``, saved in
    ``state_dict()``), drawn on the Gramian's device. torchjd's ``PCGrad`` draws them from the
    global RNG instead (same definition otherwise).

    Args:
        seed: seed of the generator for the random task orders.
    """

    def __init__(self, num_tasks: int | None = None, *, seed: int = 0) -> None:
        super().__init__(num_tasks=num_tasks)
        self._init_randomness(seed)

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = check_gramian(gramian)
        self._check_num_tasks(k)
        work = gramian.detach().to(work_dtype(gramian.device))
        orders = random_orders(k, self._generator(work.device), work.device)
        return pcgrad_coefficients(work, orders).sum(dim=0).to(gramian.dtype)
