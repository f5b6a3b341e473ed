"""Geometric loss strategy (Chennupati et al., 2019): the geometric mean of the task losses."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.registry import register


@register("gls")
class GeometricLossStrategy(LossWeighting):
    """Geometric loss strategy: the geometric mean (Π Lₖ)^{1/K} of the task losses.

    Chennupati, Sistu, Yogamani & Rawashdeh, "MultiNet++: Multi-Stream Feature Aggregation and
    Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019.

    ``total = (Πₖ Lₖ)^{1/K}``, computed as ``exp(mean log Lₖ)`` so that the product of many small
    or large losses neither underflows nor overflows (same value and gradient). Its gradient is
    a weighted sum of the task gradients with the effective weights reported::

        wₖ = ∂total/∂Lₖ = total / (K·Lₖ)

    so a task's weight is inversely proportional to its loss (scale invariance). The losses must
    be positive; a loss of exactly 0 is clamped to the dtype's smallest normal number so that
    the step stays finite.
    """

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        safe = losses.clamp_min(torch.finfo(losses.dtype).tiny)
        total = safe.log().mean().exp()
        weights = total.detach() / (losses.numel() * safe.detach())
        return total, weights
