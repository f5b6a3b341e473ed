"""Uncertainty weighting (Kendall, Gal & Cipolla, 2018): learnable per-task log-variances."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.options import require_num_tasks
from mtlkit.balancing.registry import register


@register("uw")
class UncertaintyWeighting(LossWeighting):
    """Uncertainty weighting: Σ exp(−sₖ)·Lₖ + sₖ with learnable log-variances sₖ (Kendall 2018).

    Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
    Geometry and Semantics", CVPR 2018.

    Each task gets a learnable log-variance ``sₖ = log σₖ²`` (``nn.Parameter``, initialised to 0,
    i.e. σ = 1) and the total is::

        total = Σₖ exp(−sₖ)·Lₖ + sₖ

    The parameters reach the optimiser through ``balancer.parameters()`` (the training loop adds
    them), so they are trained with the model; for a fixed loss the optimum is ``sₖ = log Lₖ``,
    i.e. weight ``1/Lₖ``. The reported weights are ``exp(−sₖ)`` (= ∂total/∂Lₖ).

    Variant: the paper writes ``1/(2σ²)·L + log σ`` for regression and ``1/σ²·L + log σ`` for
    classification; with ``s = log σ²`` these are ``½(e^{−s}L + s)`` and ``e^{−s}L + ½s``. Like
    LibMTL and most reimplementations we use one form for every task, whatever its loss; ours is
    twice the regression form (LibMTL uses the regression form itself, with ``s`` initialised to
    −0.5), which has the same optimum ``s* = log L`` and only scales the gradients by 2.
    """

    def __init__(self, num_tasks: int | None = None) -> None:
        num_tasks = require_num_tasks("uw", num_tasks)
        super().__init__(num_tasks=num_tasks)
        self.log_vars = nn.Parameter(torch.zeros(num_tasks))

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        s = self.log_vars.to(dtype=losses.dtype)
        precision = torch.exp(-s)
        total = (precision * losses + s).sum()
        return total, precision.detach()
