"""Small optimisation problems behind the gradient aggregators, solved in torch.

Every solver here works on K×K Gramians (K = number of tasks, a few to a few dozen), is batched
where several problems share a call, runs on the Gramian's device and never moves data to the
host: the only host synchronisations are the convergence tests of the iterative loops (every
second iteration on the CPU, every fourth on accelerators; a loop that runs out of iterations
returns its last iterate) and the eigendecomposition's error check. The solves run in float64
(float32 on devices without float64, e.g. MPS) whatever the input dtype; callers cast back.

Solvers:

* :func:`solve_nonneg_qp`: ``min ½xᵀHx + cᵀx`` s.t. ``x ≥ 0`` (optionally also ``Σx = 1``), H
  positive semi-definite. Closed forms for K ≤ 2; otherwise a primal-dual interior-point method
  (Mehrotra predictor-corrector, one factorisation per iteration, batched), run until the duality
  gap is below 1e-12 of the objective's size: exact to rounding for all practical purposes, in 8
  to 20 iterations whatever the conditioning. Where the minimiser is not unique (identical task
  gradients) interior-point methods approach the *analytic centre* of the optimal face, so
  identical tasks get (nearly: ~1e-5) equal weights, unlike active-set or Frank-Wolfe methods
  that break ties by index; the direction is unique either way.
* :func:`min_norm_point`: MGDA's ``min_{w∈Δ} wᵀGw`` (the min-norm point of the convex hull).
* :func:`dual_cone_weights`: ``min_v vᵀGv`` s.t. ``v ≥ u``, for a batch of ``u`` (UPGrad, DualProj),
  solved on the cosine matrix (:func:`cosine_gramian`) so that each task is resolved in its own
  scale.
* :func:`max_min_in_ball`: CAGrad's ``max_{‖d − g₀‖ ≤ r} minᵢ gᵢᵀd``, through its dual over the
  simplex on a slightly regularised Gramian: closed form for K = 2, otherwise bisection on
  ‖g_w‖ with batched simplex QPs; the update stays in the ball whatever the solve returns.
* :func:`alpha_fair_weights`: ``Gw = w^{-1/α}``, ``w > 0`` (Nash-MTL for α = 1, FairGrad): Newton's
  method on the strictly convex ``½wᵀGw − Σ h(wᵢ)`` whose stationarity condition it is, with an
  exact line search over a geometric grid of step sizes (evaluated at once, without a host sync).
* :func:`project_simplex`: Euclidean projection onto the probability simplex (MoCo).
* :func:`normalize_gramian`: symmetrise, project onto the PSD cone (float32 Gramians of long
  Jacobians are indefinite at ~1e-6), scale to unit mean diagonal.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "alpha_fair_weights",
    "cosine_gramian",
    "dual_cone_weights",
    "equal_projection_weights",
    "max_min_in_ball",
    "min_norm_point",
    "normalize_gramian",
    "project_simplex",
    "solve_nonneg_qp",
    "work_dtype",
]


def work_dtype(device: torch.device) -> torch.dtype:
    """float64 wherever the device supports it (MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _check_every(device: torch.device) -> int:
    """How many iterations between convergence tests (each one is a host sync off the CPU)."""
    return 2 if device.type == "cpu" else 4


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == torch.float64 else 1e-6


def _check_gramian(gramian: Tensor) -> None:
    if gramian.dim() < 2 or gramian.shape[-1] != gramian.shape[-2] or gramian.shape[-1] == 0:
        raise ValueError(
            f"expected a square (K, K) Gramian with K ≥ 1, got shape {tuple(gramian.shape)}."
        )


def cosine_gramian(gramian: Tensor) -> tuple[Tensor, Tensor]:
    """Split a Gramian into its (PSD) cosine matrix and the gradient norms: ``G ≈ N·C·N``.

    Returns ``(C, n)`` in the working precision, with ``n = √diag(G)`` and C the matrix
    ``N⁻¹GN⁻¹`` (unit diagonal) symmetrised and projected onto the PSD cone. A float32 Gramian of
    a long Jacobian is indefinite at the 1e-6..1e-5 level (relative to its diagonal, measured for
    P = 10⁵..10⁶), enough to make the small problems non-convex near their solutions; clamping the
    negative eigenvalues of C rather than of G makes the correction relative to each pair of
    gradients, so a task whose gradient is 10⁴ times smaller than the others keeps its own
    relative precision. A zero gradient (``nᵢ = 0``) gets row and column ``eᵢ`` in C: decoupled
    from the others, so that a problem posed on C leaves it alone.

    Solving on C instead of G resolves every task's constraint equally well whatever the spread
    of the gradient norms, where a problem on G resolves the small tasks only to the precision
    of the largest.
    """
    _check_gramian(gramian)
    g = gramian.detach().to(work_dtype(gramian.device))
    g = 0.5 * (g + g.transpose(-1, -2))
    tiny = torch.finfo(g.dtype).tiny
    diag = g.diagonal(dim1=-2, dim2=-1).clamp(min=0.0)
    norms = diag.sqrt()
    mean = diag.mean(-1, keepdim=True)
    nonzero = (norms > tiny**0.25 * mean.sqrt()) & (mean > tiny)
    norms = torch.where(nonzero, norms, 0.0)
    inv = torch.where(nonzero, 1.0 / torch.where(nonzero, norms, 1.0), 0.0)
    cos = inv[..., :, None] * g * inv[..., None, :]
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    coupled = nonzero[..., :, None] & nonzero[..., None, :]
    cos = torch.where(coupled, cos, eye)
    if g.shape[-1] > 1:
        values, vectors = torch.linalg.eigh(cos)
        cos = (vectors * values.clamp(min=0.0)[..., None, :]) @ vectors.transpose(-1, -2)
        cos = 0.5 * (cos + cos.transpose(-1, -2))
        cos = torch.where(coupled, cos, eye)  # decoupled entries exact, not eigen-noise
    return cos, norms


def equal_projection_weights(gramian: Tensor) -> Tensor:
    """``β = N⁻¹C⁺1``: the combination ``d = Jᵀβ`` whose projection onto every unit task gradient
    is 1 (``uᵢᵀd = 1`` for all i wherever the cosine matrix C is invertible), IMTL-G's and ConFIG's
    common core.

    Computed on C (:func:`cosine_gramian`), in the working precision, so that the spread of the
    gradient norms does not enter the conditioning; eigenvalues of C below ``K·eps`` of the
    *input's* dtype (its rounding level) count as zero in the pseudo-inverse. Zero gradients get
    β = 0.
    """
    cos, norms = cosine_gramian(gramian)
    k = cos.shape[-1]
    rtol = k * torch.finfo(gramian.dtype).eps
    inv = torch.where(norms > 0, 1.0 / torch.where(norms > 0, norms, 1.0), 0.0)
    return inv * (torch.linalg.pinv(cos, rtol=rtol, hermitian=True) @ torch.ones_like(norms))


def normalize_gramian(gramian: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetrise, project onto the PSD cone and scale a Gramian to unit mean diagonal.

    The projection is that of :func:`cosine_gramian` (relative to each pair of gradients).

    Returns:
        ``(Ĝ, s)`` in the working precision, with ``s = trace(G) / K`` (the mean squared gradient
        norm) and ``Ĝ = N·PSD(C)·N / s``. Where ``s`` is 0 (all gradients zero) ``Ĝ`` is 0 and ``s``
        is returned as 1, so that callers can divide by it safely.
    """
    cos, norms = cosine_gramian(gramian)
    scale = (norms * norms).mean(-1)
    positive = scale > torch.finfo(cos.dtype).tiny
    safe = torch.where(positive, scale, torch.ones_like(scale))
    g = norms[..., :, None] * cos * norms[..., None, :]
    g = torch.where(positive[..., None, None], g / safe[..., None, None], torch.zeros_like(g))
    return g, safe


# --------------------------------------------------------------------------------------------
# Primal-dual interior point for the QPs  min ½xᵀHx + cᵀx  s.t.  x ≥ 0  [and 1ᵀx = 1]
# --------------------------------------------------------------------------------------------


_PROX = 1e-10
"""Proximal term of the Newton matrices (data at unit scale): it changes the steps, not the
solution, and damps the drift that rounding errors cause along flat directions (identical tasks)
to ~1e-5 of the weights."""


def _max_step(v: Tensor, dv: Tensor) -> Tensor:
    """Largest t ≤ 1 with v + t·dv ≥ 0 (v > 0), per batch row: 1 / max(1, max(−dv/v))."""
    return (-(dv / v).amin(-1)).clamp(min=1.0).reciprocal()


def _solve(lu: Tensor, piv: Tensor, vec: Tensor) -> Tensor:
    """Solve with a factorised (B, K, K) matrix for a (B, K) right-hand side."""
    return torch.linalg.lu_solve(lu, piv, vec[..., None])[..., 0]


def _qp_interior_point(
    h: Tensor, c: Tensor, offset: Tensor, *, simplex: bool, tol: float, max_iter: int
) -> tuple[Tensor, Tensor]:
    """Mehrotra predictor-corrector for ``min ½xᵀHx + cᵀx`` s.t. ``x ≥ 0`` [and ``Σx = 1``].

    B problems of K variables at once: ``h`` is a shared ``(K, K)`` or a batch ``(B, K, K)`` of
    PSD matrices, ``c`` is ``(B, K)``, data scaled to O(1). The iterations stop when, in every
    problem, the duality gap ``xᵀs`` is below ``tol·|½xᵀHx + cᵀx + offset|`` (a *relative* gap, so
    that a small optimum, e.g. MGDA near a Pareto-stationary point where ‖d‖ ≪ ‖gᵢ‖, is resolved
    as accurately as a large one: for MGDA ‖d − d*‖² ≤ gap) and the dual residual below ``tol``
    relative to the gradient.

    The Newton matrix is ``H + S/X`` plus, with the simplex constraint, the augmented-Lagrangian
    term ``11ᵀ`` (exact on the constraint's linearisation): it is then positive definite and well
    conditioned even where H is singular on a direction that leaves the simplex (0 in the convex
    hull), so that one LU factorisation per iteration serves the predictor, the corrector and the
    equality's multiplier (``(H + 11ᵀ + S/X)dx + 1·dy = r − rp·1``, ``1ᵀdx = −rp``). A proximal
    term 1e-10·I keeps it non-singular where H is singular along the simplex (identical rows),
    without moving the solution. The centring target never goes below ``tol/100`` of the gap
    target, so that problems that converged before the others stay put. No host sync but the
    convergence test.

    Returns:
        ``(x, s)``: the primal iterate and the multipliers of ``x ≥ 0``.
    """
    batch, k = c.shape
    shared = h.dim() == 2
    eye = torch.eye(k, dtype=c.dtype, device=c.device)
    newton_base = (h + 1.0 if simplex else h) + _PROX * eye  # + 11ᵀ (simplex) + proximal term
    z = torch.cat([torch.full_like(c, 1.0 / k if simplex else 1.0), torch.ones_like(c)], dim=-1)
    x, s = z[:, :k], z[:, k:]
    y = c.new_zeros(batch, 1)
    rp = c.new_zeros(batch, 1)
    ones = c.new_ones(batch, k)
    size = c.new_ones(batch, 1)
    eps = torch.finfo(c.dtype).eps
    every = _check_every(c.device)
    for it in range(max_iter):
        grad = torch.addmm(c, x, h) if shared else torch.baddbmm(c[:, None], x[:, None], h)[:, 0]
        rd = grad - s
        if simplex:
            rd += y
            rp = x.sum(-1, keepdim=True) - 1.0
        xs = x * s
        if it >= 4 and it % every == 0:
            # ½xᵀHx + cᵀx + offset, the size against which the gap is measured.
            size = (x * (grad + c)).sum(-1, keepdim=True).mul_(0.5).add_(offset)
            size = size.abs_().clamp_(min=_SIZE_FLOOR)
            gap = (xs.sum(-1, keepdim=True) / size).amax()
            # The dual residual cannot go below the rounding error of Hx (~eps·|H||x| at unit
            # scale), however small the gradient itself is.
            scale = grad.abs().amax(-1, keepdim=True) + size
            dual = ((rd.abs().amax(-1, keepdim=True) - 64 * eps) / scale).amax()
            err = torch.maximum(torch.maximum(gap, dual), rp.abs().amax())
            if bool(err <= tol):
                break
        mu = xs.mean(-1, keepdim=True)
        lu, piv, _ = torch.linalg.lu_factor_ex(newton_base + torch.diag_embed(s / x))
        # Predictor (rc = x∘s: r = −rd − s), with the multiplier's direction w1 = M⁻¹1.
        r = torch.add(rd, s).neg_()
        if simplex:
            sol = torch.linalg.lu_solve(lu, piv, torch.stack([r - rp, ones], dim=-1))
            u, w1 = sol[..., 0], sol[..., 1]
            w1_sum = w1.sum(-1, keepdim=True)
            dx = torch.addcmul(u, w1, (u.sum(-1, keepdim=True) + rp) / w1_sum, value=-1.0)
        else:
            dx = _solve(lu, piv, r)
        ds = torch.div(dx, x).add_(1.0).mul_(s).neg_()
        dz = torch.cat([dx, ds], dim=-1)
        za = torch.addcmul(z, _max_step(z, dz)[:, None], dz)
        mu_aff = (za[:, :k] * za[:, k:]).mean(-1, keepdim=True)
        target = torch.maximum((mu_aff / mu).pow_(3).mul_(mu), size * (1e-2 * tol / k))
        # Corrector.
        rc = torch.addcmul(xs, dx, ds).sub_(target)
        r = torch.div(rc, x).add_(rd).neg_()
        if simplex:
            u = _solve(lu, piv, r - rp)
            dy = (u.sum(-1, keepdim=True) + rp) / w1_sum
            dx = torch.addcmul(u, w1, dy, value=-1.0)
        else:
            dx = _solve(lu, piv, r)
        ds = torch.addcmul(rc, s, dx).div_(x).neg_()
        dz = torch.cat([dx, ds], dim=-1)
        t = _max_step(z, dz).mul_(0.99)[:, None]
        z = torch.addcmul(z, t, dz)
        x, s = z[:, :k], z[:, k:]
        if simplex:
            y = torch.addcmul(y, t, dy)
    return x, s


def _snap(x: Tensor, s: Tensor) -> Tensor:
    """Set to exactly 0 the entries that the interior point left at O(μ) on active bounds."""
    return torch.where((x < s) & (x <= 1e-6 * x.amax(-1, keepdim=True)), 0.0, x)


_SIZE_FLOOR = 1e-10
"""Objective sizes below this (relative to the data's unit scale) count as 0: for MGDA, a
min-norm point with ‖d‖² below 1e-10 of the mean ‖gᵢ‖² is resolved to an absolute accuracy."""


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
            change of variables v = u + x of :func:`dual_cone_weights`).
        tol: relative tolerance on the duality gap and the dual residual; by default 1e-12 in
            float64 (1e-6 in float32).
        max_iter: most interior-point iterations (typically 8 to 20 are used).

    Returns:
        The minimiser, ``(..., K)``, in the working precision (float64 except on MPS). Without the
        simplex constraint the problem must be bounded below; a tiny ridge keeps the iterations
        bounded when the set of minimisers is unbounded. Where the minimiser is not unique the
        iterations approach the analytic centre of the optimal face.
    """
    _check_gramian(hessian)
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
    tol = _default_tol(dtype) if tol is None else tol
    x, s = _qp_interior_point(h, c, off, simplex=simplex, tol=tol, max_iter=max_iter)
    return _snap(x, s).reshape(*batch_shape, k)


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


# --------------------------------------------------------------------------------------------
# The problems of the aggregators
# --------------------------------------------------------------------------------------------


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
    cosine coordinates (``ṽ = Nv``, ``C = N⁻¹GN⁻¹``, see :func:`cosine_gramian`) as the
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
    and scaled to unit mean diagonal by :func:`normalize_gramian`), i.e. every gradient gets a
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


def alpha_fair_weights(
    gramian: Tensor,
    alpha: float = 1.0,
    *,
    ridge: float = 1e-14,
    init: Tensor | None = None,
    tol: float | None = None,
    max_iter: int = 50,
) -> Tensor:
    """Solve ``Gw = w^{-1/α}`` (element-wise), ``w > 0``: the α-fair allocation.

    For α = 1 this is Nash-MTL's bargaining solution ``Gα = 1/α`` (Navon et al. 2022); for
    other α, FairGrad's (Ban & Ji 2024). It is the stationarity condition of the strictly convex
    ``f(w) = ½wᵀGw − Σ h(wᵢ)`` with ``h' (w) = w^{-1/α}`` (``h = log`` for α = 1), minimised by
    Newton's method from the exact solution for orthogonal gradients, ``wᵢ = Gᵢᵢ^{-α/(1+α)}``, with
    an exact line search over step sizes ``t·2^{-j}`` (t: the largest step keeping w > 0).

    The solution exists when no non-negative combination of the gradients vanishes (e.g. a task
    with a zero gradient); to always be defined, the solve adds ``ridge·Gᵢᵢ + ridge²·trace(G)/K``
    to the diagonal (relative to each task's own norm: a task with a tiny gradient keeps its
    relative precision; a zero gradient gets a large finite weight, which does not change d). The
    scaling law ``w(sG) = s^{-α/(1+α)} w(G)`` is used to solve at unit scale.

    Args:
        gramian: ``(K, K)`` PSD G.
        alpha: α > 0.
        ridge: relative ridge (see above), default 1e-14.
        init: optional starting point (e.g. the previous step's weights, in G's scale); the better
            of it and the default start is used.
        tol: tolerance on ``max |w^{1/α}·(Gw) − 1|`` (default 1e-12 in float64).
        max_iter: most Newton iterations (5 to 15 typically).

    Returns:
        ``(K,)`` weights, in the working precision.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}.")
    g, scale = normalize_gramian(gramian)
    dtype, device = g.dtype, g.device
    k = g.shape[-1]
    # Relative to each task's own squared norm (plus a floor for zero gradients), so that a task
    # with a tiny gradient keeps its relative precision.
    g = g + torch.diag(ridge * g.diagonal() + ridge**2)
    p = 1.0 / alpha
    expo = -alpha / (1.0 + alpha)

    def h(w: Tensor) -> Tensor:
        return torch.log(w) if alpha == 1.0 else w.pow(1.0 - p) / (1.0 - p)

    def f(w: Tensor) -> Tensor:
        return 0.5 * ((w @ g) * w).sum(-1) - h(w).sum(-1)

    w = g.diagonal().pow(expo)
    if init is not None:
        w_init = init.detach().to(dtype=dtype, device=device) / scale.pow(expo)
        w_init = torch.where(torch.isfinite(w_init) & (w_init > 0), w_init, w)
        w = torch.where(f(w_init) < f(w), w_init, w)
    tol = _default_tol(dtype) if tol is None else tol
    steps = torch.pow(2.0, -torch.arange(0, 40, dtype=dtype, device=device))
    eye = torch.eye(k, dtype=dtype, device=device)
    every = _check_every(device)
    for it in range(max_iter):
        gw = g @ w
        wp = w.pow(-p)
        residual = (gw / wp - 1.0).abs().amax()
        if (it + 1) % every == 0 and bool(residual <= tol):
            break
        grad = gw - wp
        hess = g + eye * (p * wp / w)
        dw = -torch.linalg.solve_ex(hess, grad)[0]
        decrement = -(grad * dw).sum()
        reach = _max_step(w[None], dw[None])[0]
        t_max = torch.where(reach >= 1.0, torch.ones_like(reach), 0.99 * reach)
        cand = w + (t_max * steps)[:, None] * dw
        valid = (cand > 0).all(-1)
        vals = torch.where(valid, f(cand.clamp(min=torch.finfo(dtype).tiny)), torch.inf)
        best = vals.argmin()
        # Inside the region of quadratic convergence take the full Newton step: the line search
        # would compare function values that differ by rounding only.
        t = torch.where(decrement < 1e-3, t_max, t_max * steps[best])
        w_new = w + t * dw
        w = torch.where((w_new > 0).all() & torch.isfinite(w_new).all(), w_new, w)
    return w * scale.pow(expo)


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row of ``v`` (``(..., K)``) onto the probability simplex.

    The sort-based algorithm of Held, Wolfe & Crowder (1974) / Duchi et al. (2008), exact.
    """
    k = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    ind = torch.arange(1, k + 1, dtype=v.dtype, device=v.device)
    cond = (u - css / ind) > 0
    rho = (cond * ind).amax(-1, keepdim=True)  # number of positive entries (≥ 1)
    theta = css.gather(-1, rho.long() - 1) / rho
    return (v - theta).clamp(min=0.0)
