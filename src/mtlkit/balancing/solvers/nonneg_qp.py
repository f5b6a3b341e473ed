"""``min ½xᵀHx + cᵀx`` s.t. ``x ≥ 0`` (optionally also ``Σx = 1``), H positive semi-definite.

Closed forms for K ≤ 2 (two tasks, the common case); otherwise the interior point of
:mod:`mtlkit.balancing.solvers.interior_point` on the data scaled to unit size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.solvers.gramian import check_gramian, work_dtype
from mtlkit.balancing.solvers.interior_point import qp_interior_point, snap
from mtlkit.balancing.solvers.iterations import default_tol

__all__ = ["solve_nonneg_qp"]


def solve_nonneg_qp(
    hessian: Tensor,
    linear: Tensor,
    *,
    simplex: bool = False,
    offset: Tensor | float = 0.0,
    tol: float | None = None,
    max_iter: int = 100,
) -> Tensor:
    """Solve ``min ½xᵀHx + cᵀx`` s.t. ``x ≥ 0`` (and ``Σx = 1`` when ``simplex``).

    Args:
        hessian: ``(..., K, K)`` symmetric positive semi-definite H.
        linear: ``(..., K)`` c; batch dimensions broadcast against ``hessian``'s.
        simplex: add the constraint ``Σx = 1``.
        offset: constant ``(...)`` added to the objective for the convergence test, which
            stops when the duality gap is below ``tol·|½xᵀHx + cᵀx + offset|``: pass the constant
            that makes this the quantity whose relative accuracy matters (e.g. ½uᵀGu after the
            change of variables v = u + x of
            :func:`~mtlkit.balancing.solvers.dual_cone.dual_cone_weights`).
        tol: relative tolerance on the duality gap and the dual residual; by default 1e-12 in
            float64 (1e-6 in float32).
        max_iter: most interior-point iterations (typically 8 to 20 are used).

    Returns:
        The minimiser, ``(..., K)``, in the working precision (float64 except on MPS). Without the
        simplex constraint the problem must be bounded below; a tiny ridge keeps the iterations
        bounded when the set of minimisers is unbounded. Where the minimiser is not unique the
        iterations approach the analytic centre of the optimal face.
    """
    check_gramian(hessian, batched=True)
    dtype = work_dtype(hessian.device)
    h = hessian.detach().to(dtype)
    c = linear.detach().to(dtype=dtype, device=hessian.device)
    batch_shape = torch.broadcast_shapes(h.shape[:-2], c.shape[:-1])
    k = h.shape[-1]
    tiny = torch.finfo(dtype).tiny
    h = 0.5 * (h + h.transpose(-1, -2))
    c = c.expand(*batch_shape, k).reshape(-1, k)
    off = torch.as_tensor(offset, dtype=dtype, device=h.device).expand(batch_shape).reshape(-1, 1)
    shared = h.dim() == 2  # one Hessian for the whole batch: keep it (K, K)
    h = h if shared else h.expand(*batch_shape, k, k).reshape(-1, k, k)
    # Scale to unit mean curvature (and unit linear term without the simplex, where it sets the
    # size of x): the minimiser does not change and the tolerances become relative.
    scale = h.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True).clamp(min=tiny)
    if not simplex:
        size = c.abs().amax(-1, keepdim=True).clamp(min=tiny)
        scale = torch.maximum(scale, size.amax() if shared else size)
    h = h / (scale if shared else scale[..., None])
    c = c / scale
    off = off / scale
    if not simplex:
        # A tiny ridge keeps the central path bounded when the minimisers form an unbounded set.
        h = h + torch.finfo(dtype).eps * torch.eye(k, dtype=dtype, device=h.device)
    if k <= 2:
        return _solve_small(h, c, simplex).reshape(*batch_shape, k)
    tol = default_tol(dtype) if tol is None else tol
    x, s = qp_interior_point(h, c, off, simplex=simplex, tol=tol, max_iter=max_iter)
    return snap(x, s).reshape(*batch_shape, k)


def _solve_small(h: Tensor, c: Tensor, simplex: bool) -> Tensor:
    """Closed forms for K ≤ 2 (the most common case, two tasks), exact and branch-free.

    Simplex: the minimiser of the convex 1-D restriction to the segment, clamped. Box: the best of
    the minimisers of the faces (origin, the two half-axes, the interior), which holds the global
    minimiser of a convex problem.
    """
    k = c.shape[-1]
    if k == 1:
        if simplex:
            return torch.ones_like(c)
        return (-c / h.reshape(-1, 1)).clamp(min=0.0).nan_to_num(0.0, 0.0, 0.0)
    hb = h.expand(c.shape[0], 2, 2)
    h11, h12, h22 = hb[:, 0, 0], hb[:, 0, 1], hb[:, 1, 1]
    c1, c2 = c[:, 0], c[:, 1]
    if simplex:
        curvature = h11 + h22 - 2.0 * h12
        slope = h12 - h22 + c1 - c2  # derivative at t = 0 of f(t, 1 − t)
        flat = curvature <= 1e-14 * (h11 + h22)
        t = torch.where(
            flat,
            torch.where(slope < 0, 1.0, torch.where(slope > 0, 0.0, 0.5)),
            (-slope / torch.where(flat, 1.0, curvature)).clamp(0.0, 1.0),
        )
        return torch.stack([t, 1.0 - t], dim=-1)
    zero = torch.zeros_like(c1)
    a1 = torch.where(h11 > 0, (-c1 / torch.where(h11 > 0, h11, 1.0)).clamp(min=0.0), zero)
    a2 = torch.where(h22 > 0, (-c2 / torch.where(h22 > 0, h22, 1.0)).clamp(min=0.0), zero)
    det = h11 * h22 - h12 * h12
    ok = det > 1e-14 * (h11 * h22)
    safe = torch.where(ok, det, 1.0)
    i1 = (-h22 * c1 + h12 * c2) / safe
    i2 = (h12 * c1 - h11 * c2) / safe
    cand = torch.stack(
        [
            torch.stack([zero, zero], -1),
            torch.stack([a1, zero], -1),
            torch.stack([zero, a2], -1),
            torch.stack([i1, i2], -1),
        ],
        dim=1,
    )  # (B, 4, 2)
    value = 0.5 * torch.einsum("bni,bij,bnj->bn", cand, hb, cand) + (cand * c[:, None]).sum(-1)
    feasible = torch.stack([ok.new_ones(ok.shape)] * 3 + [ok & (i1 >= 0) & (i2 >= 0)], dim=1)
    best = torch.where(feasible, value, torch.inf).argmin(-1)
    return cand[torch.arange(c.shape[0], device=c.device), best]
