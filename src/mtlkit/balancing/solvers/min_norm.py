"""MGDA's problem: the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.solvers.gramian import normalize_gramian
from mtlkit.balancing.solvers.nonneg_qp import solve_nonneg_qp

__all__ = ["min_norm_point"]


def min_norm_point(gramian: Tensor, *, tol: float | None = None, max_iter: int = 100) -> Tensor:
    """Weights of the min-norm point of the convex hull of the rows of J: ``argmin_{w∈Δ} wᵀGw``.

    Exact to the solver's tolerance (duality gap below 1e-12·wᵀGw, so ‖d − d*‖ ≤ 1e-6·‖d*‖),
    unlike a fixed number of Frank-Wolfe steps. Invariant to scaling G. Where the minimiser is
    not unique (linearly dependent gradients) the iterate approaches the analytic centre of the
    optimal face.

    Returns:
        ``(..., K)`` weights on the simplex, in the working precision.
    """
    g, _ = normalize_gramian(gramian)
    k = g.shape[-1]
    if k == 1:
        return torch.ones(g.shape[:-1], dtype=g.dtype, device=g.device)
    w = solve_nonneg_qp(
        g,
        torch.zeros(g.shape[:-1], dtype=g.dtype, device=g.device),
        simplex=True,
        tol=tol,
        max_iter=max_iter,
    )
    w = w.clamp(min=0.0)
    return w / w.sum(-1, keepdim=True)
