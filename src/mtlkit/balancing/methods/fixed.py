"""Static loss weightings: equal weights and fixed weights (including a two-task trade-off λ)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.options import check_number, check_weights
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
        weights: one finite, non-negative weight per task, at least one above 0.
        lam: the two-task trade-off λ, a number in [0, 1]; task 1 gets λ, task 2 gets 1−λ.
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
            lam = check_number("fixed", "lam", lam, low=0.0, high=1.0)
            if num_tasks not in (None, 2):
                raise ValueError(
                    f"fixed: lam is a two-task trade-off, but there are {num_tasks} tasks; "
                    "give weights=[...] (one per task) instead."
                )
            values = [lam, 1.0 - lam]
        else:
            values = check_weights("fixed", "weights", weights)
        if num_tasks is not None and len(values) != num_tasks:
            raise ValueError(
                f"fixed: weights has {len(values)} entries but there are {num_tasks} tasks."
            )
        super().__init__(num_tasks=len(values))
        self.register_buffer("weights", torch.tensor(values))

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weights.to(dtype=losses.dtype, device=losses.device)
        return (w * losses).sum(), w
