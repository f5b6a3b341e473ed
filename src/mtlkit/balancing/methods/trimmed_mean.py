"""Trimmed mean: per coordinate, the mean of the task gradients without the extreme values."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GradientAggregator
from mtlkit.balancing.methods._common import check_jacobian
from mtlkit.balancing.options import check_int
from mtlkit.balancing.registry import register


@register("trimmed-mean")
class TrimmedMean(GradientAggregator):
    """Trimmed mean: per coordinate, drop the trim_number largest and smallest values; average.

    Yin, Chen, Ramchandran & Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal
    Statistical Rates", ICML 2018 (Definition 2, the coordinate-wise trimmed mean); torchjd's
    ``TrimmedMean``.

    With b = ``trim_number`` and, for each coordinate p, the K values J₁ₚ ≤ … ≤ J_Kₚ sorted::

        dₚ = (1 / (K − 2b)) Σ_{i=b+1}^{K−b} Jᵢₚ

    so up to b arbitrary (e.g. exploding) task gradients cannot move any coordinate beyond the
    range of the others. Not a weighting of the task gradients (each coordinate keeps its own
    tasks), so it reads the whole Jacobian. Same definition as torchjd's.

    Args:
        trim_number: b ≥ 0, the values dropped at each end of every coordinate (needs K ≥ 2b + 1;
            default 1, the median for 3 tasks; torchjd has no default; 0 is the plain mean).
    """

    def __init__(self, num_tasks: int | None = None, *, trim_number: int = 1) -> None:
        super().__init__(num_tasks)
        self.trim_number = check_int("trimmed-mean", "trim_number", trim_number)
        if num_tasks is not None:
            self._check_tasks(num_tasks)

    def _check_tasks(self, k: int) -> None:
        if k < 2 * self.trim_number + 1:
            raise ValueError(
                f"trimmed-mean needs at least 2·trim_number + 1 = {2 * self.trim_number + 1} "
                f"tasks, got {k}: lower trim_number."
            )

    @torch.no_grad()
    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = check_jacobian(jacobian)
        self._check_num_tasks(k)
        self._check_tasks(k)
        kept = jacobian.sort(dim=0).values[self.trim_number : k - self.trim_number]
        return kept.mean(dim=0)
