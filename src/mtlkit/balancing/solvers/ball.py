"""CAGrad's problem: the best worst-case improvement ``minᵢ gᵢᵀd`` within a ball around ``Jᵀu``."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.solvers.gramian import normalize_gramian
from mtlkit.balancing.solvers.nonneg_qp import solve_nonneg_qp

__all__ = ["max_min_in_ball"]


def _cagrad_dual_k2(h: Tensor, b: Tensor, r: Tensor) -> Tensor:
    """Closed-form minimiser ``w = (t, 1 − t)`` of ``bᵀw + r‖g_w‖`` for K = 2 (H positive definite).

    With ``‖g_w‖² = At² + 2Bt + C`` (A = ‖g₁ − g₂‖², B = (g₁ − g₂)ᵀg₂, C = ‖g₂‖²) and
    ``AC − B² = det H > 0``, the derivative ``β + r(At + B)/‖g_w‖`` (β = b₁ − b₂) vanishes at
    ``At + B = s·√(det H / (A − s²))``, s = −β/r, when s² < A; otherwise it has β's sign on all
    of [0, 1] (|At + B| < √A·‖g_w‖) and the minimiser is an end point.
    """
    h11, h12, h22 = h[0, 0], h[0, 1], h[1, 1]
    a = (h11 + h22 - 2.0 * h12).clamp(min=torch.finfo(h.dtype).tiny)
    bb = h12 - h22
    det = (h11 * h22 - h12 * h12).clamp(min=0.0)
    slope = b[0] - b[1]
    s = -slope / r
    room = a - s * s
    inside = room > 0
    y = s * (det / torch.where(inside, room, 1.0)).sqrt()
    t = torch.where(inside, ((y - bb) / a).clamp(0.0, 1.0), (slope < 0).to(h.dtype))
    return torch.stack([t, 1.0 - t])


def _cagrad_dual_bisect(h: Tensor, b: Tensor, r: Tensor, floor: float, rounds: int) -> Tensor:
    """Minimiser of ``bᵀw + r‖g_w‖`` over the simplex (``‖g_w‖² = wᵀHw``, H positive definite).

    ``√a = min_{τ>0} (a/τ + τ)/2`` makes the dual ``min_τ φ(τ)`` with ``φ(τ) = rτ/2 + min_{w∈Δ}
    bᵀw + (r/2τ)wᵀHw``: jointly convex in (w, τ), so φ is convex and, by the envelope theorem,
    ``φ'(τ) = (r/2)(1 − ‖g_{w(τ)}‖²/τ²)`` with w(τ) the simplex QP's minimiser, the same as that of
    ``½wᵀHw + (τ/r)bᵀw``. Its root τ* = ‖g_w*‖ is bracketed by ``[floor, √max Hᵢᵢ]`` (floor² ≤
    min_{w∈Δ} wᵀHw) and located by ``rounds`` rounds of 15 log-spaced trial points, each round
    one batched interior-point solve; the QP of the final τ gives w.
    """
    dtype, device = h.dtype, h.device
    lo = torch.as_tensor(floor, dtype=dtype, device=device).log()
    hi = h.diagonal().amax().sqrt().log()
    frac = torch.arange(1, 16, dtype=dtype, device=device) / 16.0
    zero = torch.zeros((), dtype=dtype, device=device)
    for _ in range(rounds):
        tau = (lo + (hi - lo) * frac).exp()  # (15,)
        w = solve_nonneg_qp(h, (tau / r)[:, None] * b, simplex=True, offset=zero)
        above = tau * tau >= ((w @ h) * w).sum(-1)  # φ'(τ) ≥ 0: τ* ≤ τ
        first = torch.where(above, frac, 2.0).argmin()  # first trial point at or above τ*
        new_hi = torch.where(above.any(), tau[first].log(), hi)
        new_lo = torch.where(first > 0, tau[(first - 1).clamp(min=0)].log(), lo)
        new_lo = torch.where(above.any(), new_lo, tau[-1].log())
        lo, hi = new_lo, new_hi
    tau = (0.5 * (lo + hi)).exp()
    return solve_nonneg_qp(h, (tau / r) * b, simplex=True, offset=zero)


def max_min_in_ball(
    gramian: Tensor,
    center: Tensor,
    radius: Tensor | float,
    *,
    ridge: float = 1e-10,
    rounds: int = 9,
) -> Tensor:
    """Weights of ``d* = argmax_{‖d − Jᵀu‖ ≤ r} minᵢ gᵢᵀd`` (CAGrad's problem, Liu et al. 2021).

    Solved through its dual over the simplex, as in the paper (Algorithm 1) and the official
    code::

        w* = argmin_{w∈Δ} bᵀw + r‖g_w‖,   b = Gu,   g_w = Jᵀw,   d* = Jᵀu + (r/‖g_w*‖)·g_w*

    (weak duality: ``minᵢ gᵢᵀd ≤ g_wᵀd ≤ bᵀw + r‖g_w‖`` for every feasible d and w ∈ Δ). The norms
    are those of the *regularised* Gramian ``H = Ĝ + diag(ridge·Ĝᵢᵢ + ridge²)`` (Ĝ: G made PSD
    and scaled to unit mean diagonal by
    :func:`~mtlkit.balancing.solvers.gramian.normalize_gramian`), i.e. every gradient gets a
    private extra coordinate of relative size √ridge. This does three things:

    * ``‖g_w‖ > 0`` on the whole simplex, so the dual is smooth (the kink at ``g_w = 0``, where
      0 is in the convex hull and the official code divides by ``‖g_w‖ + 1e-8``, is gone);
    * the weights stay bounded (``‖g_w‖_H² ≥ ridge·Σᵢwᵢ²Ĝᵢᵢ``): errors of a Gramian accurate to
      ~``ridge`` relative (float32) cannot turn a near-zero ``g_w`` into a huge update;
    * whatever w ∈ Δ the solve returns, ``β = u + r·w/‖g_w‖_H`` satisfies ``‖Jᵀ(β − u)‖ ≤ r``
      (for every J whose Gramian is below H), so ``‖d‖ ≤ ‖g₀‖ + r``: the ball constraint holds by
      construction, not by convergence.

    For K = 2 the dual is solved in closed form; for K > 2 by bisection on the norm
    ``τ = ‖g_w‖`` with batched simplex QPs (:func:`_cagrad_dual_bisect`). Where 0 is (nearly) in
    the convex hull the solution tends, as ridge → 0, to a maximiser of the worst-case
    improvement (value ≤ 0); the direction then depends on ridge, its norm never exceeds the bound.

    Args:
        gramian: ``(K, K)`` Gramian G (made PSD and scaled here).
        center: ``(K,)`` u (CAGrad: 1/K each, the mean gradient).
        radius: r ≥ 0 (CAGrad: c·‖Jᵀu‖).
        ridge: the relative regularisation above; use at least the Gramian's relative accuracy
            (~1e-5 for float32 Gramians of long Jacobians).
        rounds: bisection rounds for K > 2 (each narrows the bracket of log τ 16-fold).

    Returns:
        ``(K,)`` weights β with d* = Jᵀβ, in the working precision.
    """
    g, unit = normalize_gramian(gramian)
    dtype, device = g.dtype, g.device
    k = g.shape[-1]
    u = center.detach().to(dtype=dtype, device=device).reshape(k)
    r = torch.as_tensor(radius, dtype=dtype, device=device) / unit.sqrt()  # in units of √unit
    tiny = torch.finfo(dtype).tiny
    positive = r > tiny
    r_safe = torch.where(positive, r, 1.0)
    h = g + torch.diag(ridge * g.diagonal() + ridge * ridge)
    b = h @ u
    if k == 1:
        w = torch.ones(1, dtype=dtype, device=device)
    elif k == 2:
        w = _cagrad_dual_k2(h, b, r_safe)
    else:
        w = _cagrad_dual_bisect(h, b, r_safe, ridge / k**0.5, rounds)
        w = w.clamp(min=0.0)
        w = w / w.sum()
    norm = (w @ h @ w).clamp(min=ridge * ridge / k).sqrt()
    return torch.where(positive, u + (r_safe / norm) * w, u)
