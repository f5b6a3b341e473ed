"""IMTL-L, the loss-balance half of Impartial Multi-task Learning (Liu et al., 2021).

The gradient-balance half, IMTL-G, is a gradient aggregator and lives in ``imtl_g.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.options import require_num_tasks
from mtlkit.balancing.registry import register


@register("imtl-l")
class IMTLLoss(LossWeighting):
    """IMTL-L: Σ e^{sₖ}·Lₖ − sₖ with learnable scales sₖ, driving every scaled loss to 1.

    Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task Learning",
    ICLR 2021 (the loss-balance part, IMTL-L).

    Each task gets a learnable scale parameter ``sₖ`` (``nn.Parameter``, initialised to 0) and::

        total = Σₖ e^{sₖ}·Lₖ − sₖ

    which is minimised over the model *and* over ``s`` (the training loop adds
    ``balancer.parameters()`` to the optimiser). The total is convex in ``sₖ`` with minimum at
    ``e^{sₖ}·Lₖ = 1``: the scaled losses are pushed to the same value, whatever the raw scale of
    each task. The reported weights are ``e^{sₖ}`` (= ∂total/∂Lₖ). This is LibMTL's form too.
    """

    def __init__(self, num_tasks: int | None = None) -> None:
        num_tasks = require_num_tasks("imtl-l", num_tasks)
        super().__init__(num_tasks=num_tasks)
        self.scales = nn.Parameter(torch.zeros(num_tasks))

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        s = self.scales.to(dtype=losses.dtype)
        weights = torch.exp(s)
        total = (weights * losses - s).sum()
        return total, weights.detach()
