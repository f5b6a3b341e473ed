"""Nash-MTL's and FairGrad's problem: the α-fair weights, ``Gw = w^{-1/α}``, ``w > 0``."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.solvers.gramian import normalize_gramian
from mtlkit.balancing.solvers.iterations import check_every, default_tol, max_step

__all__ = ["alpha_fair_weights"]


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
    tol = default_tol(dtype) if tol is None else tol
    steps = torch.pow(2.0, -torch.arange(0, 40, dtype=dtype, device=device))
    eye = torch.eye(k, dtype=dtype, device=device)
    every = check_every(device)
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
        reach = max_step(w[None], dw[None])[0]
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
