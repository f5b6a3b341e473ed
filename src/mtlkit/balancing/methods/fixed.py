"""Static loss weightings: equal weights and fixed weights (including a two-task trade-off λ)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.registry import register


@register("ew")
class EqualWeighting(LossWeighting):
    """Equal weighting: the plain sum of the task losses (every weight 1)."""

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        return losses.sum(), torch.ones_like(losses)


@register("fixed")
class FixedWeighting(LossWeighting):
    """Fixed weights: Σ wₖLₖ with user-given wₖ, or λ·L₁ + (1−λ)·L₂ for two tasks.

    Args:
        weights: one non-negative weight per task.
        lam: the two-task trade-off λ in [0, 1]; task 1 gets λ, task 2 gets 1−λ.
    Give exactly one of the two.
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        weights: Sequence[float] | None = None,
        lam: float | None = None,
    ) -> None:
        if (weights is None) == (lam is None):
            raise ValueError("fixed needs exactly one of 'weights' (one per task) or 'lam' (λ).")
        if lam is not None:
            if not 0.0 <= float(lam) <= 1.0:
                raise ValueError(f"lam must be in [0, 1], got {lam}.")
            if num_tasks not in (None, 2):
                raise ValueError(f"lam is a two-task trade-off, but there are {num_tasks} tasks.")
            weights = [float(lam), 1.0 - float(lam)]
        values = [float(w) for w in weights]
        if any(w < 0 for w in values) or not any(w > 0 for w in values):
            raise ValueError(f"weights must be non-negative with one above 0, got {values}.")
        if num_tasks is not None and len(values) != num_tasks:
            raise ValueError(f"weights has {len(values)} entries but there are {num_tasks} tasks.")
        super().__init__(num_tasks=len(values))
        self.register_buffer("weights", torch.tensor(values))

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weights.to(dtype=losses.dtype, device=losses.device)
        return (w * losses).sum(), w
