"""CAGrad: the best worst-case improvement within a ball around the mean gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.options import check_number
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.ball import max_min_in_ball
from mtlkit.balancing.solvers.gramian import work_dtype

_RESCALES = (0, 1, 2)


@register("cagrad")
class CAGrad(GramianWeighting):
    """CAGrad: maximise the worst task's improvement within a ball around the mean gradient.

    Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
    NeurIPS 2021 (Algorithm 1).

    With g₀ = (1/K)Σᵢ gᵢ the mean gradient and √φ = c‖g₀‖::

        d* = argmax_{‖d − g₀‖ ≤ √φ} minᵢ gᵢᵀd
           = g₀ + (√φ / ‖g_w*‖) g_w*,   w* = argmin_{w ∈ Δ} g_wᵀg₀ + √φ‖g_w‖,   g_w = Σᵢ wᵢgᵢ

    and the update is d*/r, i.e. the weights (1/K + (√φ/‖g_w*‖)·w*ᵢ)/r. The paper and the
    official code solve the dual over the simplex with scipy's SLSQP (which stalls far from the
    optimum on badly scaled gradients) and divide by ‖g_w‖ + 1e-8; here the same dual is solved
    exactly (closed form for K = 2, otherwise a safeguarded search for ‖g_w*‖ with a few simplex
    QPs, see :func:`mtlkit.balancing.solvers.ball.max_min_in_ball`) on the Gramian plus a relative
    ridge of 100·eps of its dtype (1.2e-5 for float32, 1e-10 at least), so that ‖g_w‖ > 0 and,
    whatever the solve returns, ‖d* − g₀‖ ≤ √φ and ‖d*‖ ≤ (1 + c)‖g₀‖. Where g_w* ≈ 0 (0 in the
    convex hull) d* is optimal to ~1e-5 of the scale. c = 0 gives the mean gradient. The weights
    do not depend on the scale of J.

    Args:
        c: the ball's radius relative to ‖g₀‖, c ≥ 0 (paper: 0.4 on NYUv2, 0.5 elsewhere).
        rescale: r. ``1`` (default): r = 1 + c², as in the official code and LibMTL's default;
            ``0``: r = 1, the update as written in Algorithm 1 (torchjd's CAGrad); ``2``: r = 1 + c.
    """

    def __init__(self, num_tasks: int | None = None, *, c: float = 0.4, rescale: int = 1) -> None:
        super().__init__(num_tasks)
        self.c = check_number("cagrad", "c", c, low=0.0)
        if rescale not in _RESCALES or isinstance(rescale, bool):
            raise ValueError(f"cagrad: rescale must be 0, 1 or 2, got {rescale!r}.")
        self.rescale = int(rescale)

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = gramian.shape[-1]
        self._check_num_tasks(k)
        divisor = (1.0, 1.0 + self.c**2, 1.0 + self.c)[self.rescale]
        # The Gramian is only as accurate as its dtype (float32: ~1e-6..1e-5 relative for long
        # Jacobians); the solver's ridge must be at least that (see max_min_in_ball).
        ridge = min(max(100.0 * torch.finfo(gramian.dtype).eps, 1e-10), 1e-2)
        g = gramian.detach().to(work_dtype(gramian.device))
        mean = torch.full((k,), 1.0 / k, dtype=g.dtype, device=g.device)
        if self.c == 0.0:
            return (mean / divisor).to(gramian.dtype)
        radius = self.c * (mean @ g @ mean).clamp(min=0.0).sqrt()  # c‖g₀‖
        return (max_min_in_ball(g, mean, radius, ridge=ridge) / divisor).to(gramian.dtype)
