"""Single-label classification with (label-smoothed) cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlkit.tasks.base import Task
from mtlkit.tasks.metrics import ClassificationMetrics, higher_is_better


@dataclass
class ClassificationTask(Task):
    """Single-label classification with cross-entropy (optionally label-smoothed).

    Args:
        name: the task's name.
        num_classes: how many classes the head scores.
        label_smoothing: ε of label smoothing in [0, 1).
    """

    name: str
    num_classes: int
    label_smoothing: float = 0.0
    primary_metric: str = "accuracy"

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(
                f"task {self.name!r}: num_classes must be ≥ 2, got {self.num_classes}."
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"task {self.name!r}: label_smoothing must be in [0, 1), "
                f"got {self.label_smoothing}."
            )
        higher_is_better(self.primary_metric)  # a metric without a known direction fails here

    @property
    def output_size(self) -> int:
        return self.num_classes

    def loss(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None:
            return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)
        per_row = F.cross_entropy(
            output,
            torch.where(mask, target, 0),  # any class: the row is left out below
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        return (per_row * mask).sum() / mask.sum().clamp(min=1)

    def metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(self.num_classes)
