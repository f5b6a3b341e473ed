"""CAGrad's problem: the best worst-case improvement ``minᵢ gᵢᵀd`` within a ball around ``Jᵀu``."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.solvers.gramian import normalize_gramian
from mtlkit.balancing.solvers.iterations import default_tol
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


_BRACKET = 1e-9
"""Where ψ cannot be resolved to ``tol`` (0 nearly in the convex hull: the QP's rounding makes
ψ noisy at ~1e-7), the search for τ* also stops once it is bracketed within a factor
``exp(1e-9)``, finer than that noise allows anyway."""


def _piece_root(
    h: Tensor, b: Tensor, r: Tensor, w: Tensor, hw: Tensor, n2: Tensor, tau: Tensor
) -> Tensor:
    """The step δ that solves ``τ + δ = ‖g_{w(τ + δ)}‖`` on the linear piece of w(τ) through
    the current τ (``inf`` where that quadratic has no root on the side of the root of φ').

    On that piece ``w(τ + δ) = w + δ·w'``, with the slope w' from the KKT system of the simplex
    QP on the support S of w: ``H_SS w'_S + y'·1 = −b_S/r``, ``1ᵀw'_S = 0`` (w' = 0 off S; the
    rows off S are replaced by the identity so that the system keeps its size). Then
    ``(τ + δ)² = n² + 2δ·wᵀHw' + δ²·w'ᵀHw'`` is a quadratic in δ, solved by the stable formulas.
    """
    k = w.shape[0]
    on = (w > 0).to(h.dtype)
    kkt = torch.zeros(k + 1, k + 1, dtype=h.dtype, device=h.device)
    kkt[:k, :k] = h * on[:, None] * on[None, :] + torch.diag(1.0 - on)
    kkt[:k, k] = on
    kkt[k, :k] = on
    rhs = torch.cat([-(b / r) * on, on.new_zeros(1)])
    slope = torch.linalg.solve_ex(kkt, rhs)[0][:k]
    qa = slope @ h @ slope - 1.0
    qb = 2.0 * (hw @ slope - tau)
    qc = n2 - tau * tau  # > 0 exactly when the root of φ' lies above τ
    disc = qb * qb - 4.0 * qa * qc
    q = -0.5 * (qb + torch.copysign(disc.clamp(min=0.0).sqrt(), qb))
    roots = torch.stack([q / qa, qc / q])
    ok = (disc >= 0) & torch.isfinite(roots) & ((roots > 0) == (qc > 0)) & (tau + roots > 0)
    return torch.where(ok, roots, torch.inf).abs().amin().copysign(qc)


def _cagrad_dual_search(
    h: Tensor, b: Tensor, r: Tensor, floor: float, *, tol: float, max_iter: int
) -> Tensor:
    """Minimiser of ``bᵀw + r‖g_w‖`` over the simplex (``‖g_w‖² = wᵀHw``, H positive definite).

    ``√a = min_{τ>0} (a/τ + τ)/2`` makes the dual ``min_τ φ(τ)`` with ``φ(τ) = rτ/2 + min_{w∈Δ}
    bᵀw + (r/2τ)wᵀHw``: jointly convex in (w, τ), so φ is convex and, by the envelope theorem,
    ``φ'(τ) = (r/2)(1 − n(τ)²/τ²)`` with ``n(τ) = ‖g_{w(τ)}‖`` and w(τ) the simplex QP's
    minimiser, the same as that of ``½wᵀHw + (τ/r)bᵀw``. So ``ψ(τ) = log n(τ) − log τ`` is
    decreasing and its root τ* = ‖g_w*‖ is bracketed by ``[floor, √max Hᵢᵢ]`` (floor² ≤
    min_{w∈Δ} wᵀHw).

    The linear term of the QP is linear in τ, so w(τ) is piecewise linear: each iteration solves
    the QP at τ (one interior-point run) and steps to the exact root of ψ on the piece through τ
    (:func:`_piece_root`), which is τ* as soon as τ lies on τ*'s piece; a step that leaves the
    bracket (or finds no root) bisects log τ instead. It stops when ``|ψ(τ)| ≤ tol`` or τ* is
    bracketed within a factor ``exp(_BRACKET)`` (two to four QPs typically, against nine batched
    ones for a bisection of log τ to a bracket of 3e-10) and returns that QP's w; after
    ``max_iter`` QPs it returns the last.
    """
    dtype, device = h.dtype, h.device
    zero = torch.zeros((), dtype=dtype, device=device)
    lo = torch.as_tensor(floor, dtype=dtype, device=device).log()
    hi = h.diagonal().amax().sqrt().log()
    log_tau = zero.clamp(min=lo, max=hi)  # τ = 1: the unit scale of the normalised Gramian
    for _ in range(max_iter):
        tau = log_tau.exp()
        w = solve_nonneg_qp(h, (tau / r) * b, simplex=True, offset=zero)
        hw = h @ w
        n2 = w @ hw
        psi = 0.5 * n2.log() - log_tau
        above = psi > 0  # n(τ) > τ: τ* lies above τ
        lo = torch.where(above, log_tau, lo)
        hi = torch.where(above, hi, log_tau)
        if bool((psi.abs() <= tol) | (hi - lo <= _BRACKET)):
            break
        step = (tau + _piece_root(h, b, r, w, hw, n2, tau)).log()
        inside = (step > lo) & (step < hi)
        log_tau = torch.where(inside, step, 0.5 * (lo + hi))
    return w


def max_min_in_ball(
    gramian: Tensor,
    center: Tensor,
    radius: Tensor | float,
    *,
    ridge: float = 1e-10,
    tol: float | None = None,
    max_iter: int = 30,
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

    For K = 2 the dual is solved in closed form; for K > 2 through the norm ``τ = ‖g_w‖`` of the
    optimum, found by safeguarded exact steps along the piecewise-linear path of the simplex QP's
    minimiser (:func:`_cagrad_dual_search`). Where 0 is (nearly) in
    the convex hull the solution tends, as ridge → 0, to a maximiser of the worst-case
    improvement (value ≤ 0); the direction then depends on ridge, its norm never exceeds the bound.

    Args:
        gramian: ``(K, K)`` Gramian G (made PSD and scaled here).
        center: ``(K,)`` u (CAGrad: 1/K each, the mean gradient).
        radius: r ≥ 0 (CAGrad: c·‖Jᵀu‖).
        ridge: the relative regularisation above; use at least the Gramian's relative accuracy
            (~1e-5 for float32 Gramians of long Jacobians).
        tol: for K > 2, the tolerance on ``|log(‖g_w‖/τ)|``, the optimality condition of τ
            (default 1e-12 in float64, 1e-6 in float32).
        max_iter: for K > 2, the most simplex QPs solved (two to four are typical).

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
        tol = default_tol(dtype) if tol is None else tol
        w = _cagrad_dual_search(h, b, r_safe, ridge / k**0.5, tol=tol, max_iter=max_iter)
        w = w.clamp(min=0.0)
        w = w / w.sum()
    norm = (w @ h @ w).clamp(min=ridge * ridge / k).sqrt()
    return torch.where(positive, u + (r_safe / norm) * w, u)
