"""Tasks: what one head predicts, how its loss is computed, and how it is scored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from mtlkit.evaluation.metrics import ClassificationMetrics


class Task(ABC):
    """One task of a multi-task model.

    Attributes:
        name: the task's name; the key of its head, its targets and its metrics.
        primary_metric: the metric that model selection and comparisons read.
        higher_is_better: whether a larger ``primary_metric`` is better.
    """

    name: str
    primary_metric: str
    higher_is_better: bool

    @property
    @abstractmethod
    def output_size(self) -> int:
        """The number of outputs the task's head must produce."""

    @abstractmethod
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The scalar loss of a batch of head outputs against targets."""

    @abstractmethod
    def metrics(self) -> ClassificationMetrics:
        """A fresh metric accumulator for this task."""


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
    higher_is_better: bool = True

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

    @property
    def output_size(self) -> int:
        return self.num_classes

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)

    def metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(self.num_classes)
