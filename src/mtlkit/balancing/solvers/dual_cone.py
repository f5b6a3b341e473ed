"""UPGrad's and DualProj's problem: projections onto the dual cone of the task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.solvers.gramian import cosine_gramian
from mtlkit.balancing.solvers.nonneg_qp import solve_nonneg_qp

__all__ = ["dual_cone_weights"]


def dual_cone_weights(
    gramian: Tensor,
    lower: Tensor,
    *,
    ridge: float = 0.0,
    tol: float | None = None,
    max_iter: int = 100,
) -> Tensor:
    """Solve ``min_v vᵀGv`` s.t. ``v ≥ u`` for every row ``u`` of ``lower``, all at once.

    By Quinton & Rey (2024, Prop. 1), ``Jᵀv`` is the projection of ``Jᵀu`` onto the dual cone of
    the rows of J, ``{x : Jx ≥ 0}``: ``gᵢᵀd ≥ 0`` for every task i. The problem is solved in
    cosine coordinates (``ṽ = Nv``, ``C = N⁻¹GN⁻¹``, see
    :func:`~mtlkit.balancing.solvers.gramian.cosine_gramian`) as the
    non-negative QP ``min ½xᵀ(C + ridge·I)x + ((C + ridge·I)Nu)ᵀx``, ``v = u + N⁻¹x``, each row
    of ``lower`` scaled to unit size first (``v(s·u) = s·v(u)``), by one batched interior-point
    run. So every task's constraint is met to the solver's relative accuracy in *its own* scale:
    ``cos(gᵢ, d) ≥ −1e-12``-ish in float64 whatever the spread of the gradient norms, where a solve
    on G resolves a task 10⁴ times smaller than the others only to 10⁻⁸ of its size.

    ``ridge`` (≥ 0) regularises the cosine matrix, i.e. G + ridge·diag(G): it bounds the weights
    (‖Nv‖ ≤ ‖Nu‖·√((1 + ridge)/ridge)) and allows, on task i, a conflict of at most
    ``gᵢᵀd ≥ −ridge·‖gᵢ‖²·vᵢ`` — relative to that task's own norm, never to the others'.

    Args:
        gramian: ``(K, K)`` PSD Gramian.
        lower: ``(..., K)`` lower bounds u.
        ridge: the relative ridge above (default 0: the exact projection).

    Returns:
        ``(..., K)`` the minimisers v, in the working precision.
    """
    cos, norms = cosine_gramian(gramian)
    k = cos.shape[-1]
    h = cos + ridge * torch.eye(k, dtype=cos.dtype, device=cos.device)
    u = lower.detach().to(dtype=cos.dtype, device=cos.device)
    scaled = norms * u  # ũ = N·u (zero-gradient tasks: 0, and decoupled in C)
    size = scaled.abs().amax(-1, keepdim=True)
    size = torch.where(size > 0, size, 1.0)
    scaled = scaled / size
    hu = (h @ scaled[..., None])[..., 0]
    offset = 0.5 * (scaled * hu).sum(-1)  # so that the convergence test measures ½ṽᵀHṽ
    x = solve_nonneg_qp(h, hu, offset=offset, tol=tol, max_iter=max_iter) * size
    inv = torch.where(norms > 0, 1.0 / torch.where(norms > 0, norms, 1.0), 0.0)
    return u + inv * x
