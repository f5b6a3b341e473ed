"""Single-label classification with (label-smoothed) cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from mtlkit.data.types import Label, TaskSpec
from mtlkit.tasks.base import Task, masked_mean
from mtlkit.tasks.metrics import ClassificationMetrics, higher_is_better
from mtlkit.tasks.registry import TASK_TYPES, TaskType


@dataclass
class ClassificationTask(Task):
    """Single-label classification with cross-entropy (optionally label-smoothed).

    Args:
        name: the task's name.
        num_classes: how many classes the head scores.
        label_smoothing: ε of label smoothing in [0, 1).
        primary_metric: the metric model selection and comparisons read.
        labels: the class names in class-index order, for predictions (empty: the indices).
    """

    name: str
    num_classes: int
    label_smoothing: float = 0.0
    primary_metric: str = "accuracy"
    labels: tuple[Label, ...] = ()

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
        if self.labels and len(self.labels) != self.num_classes:
            raise ValueError(
                f"task {self.name!r}: {len(self.labels)} class names for {self.num_classes} "
                "classes; give one name per class."
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
            target.masked_fill(~mask, 0),  # any class: the row is left out below
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        return masked_mean(per_row, mask)

    def metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(self.num_classes)

    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """``pred``: the most probable class (its name), ``prob``: its probability."""
        prob, index = output.detach().float().softmax(dim=1).max(dim=1)
        names = self.labels or range(self.num_classes)
        return {"pred": [names[i] for i in index.tolist()], "prob": prob.tolist()}


def _build(
    spec: TaskSpec, primary_metric: str, *, label_smoothing: float = 0.0
) -> ClassificationTask:
    if spec.num_classes is None:
        raise ValueError(f"task {spec.name!r}: a classification spec needs num_classes.")
    return ClassificationTask(
        spec.name, spec.num_classes, label_smoothing, primary_metric, tuple(spec.labels)
    )


TASK_TYPES.register(
    "classification",
    TaskType(
        description="one class out of C (cross-entropy); labels may be strings",
        losses=("cross_entropy",),
        metrics=("accuracy", "macro_accuracy", "micro_f1", "macro_f1"),
        options={"label_smoothing": 0.0},
        build=_build,
    ),
)
