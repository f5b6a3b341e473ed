"""Single-label classification with cross-entropy: label smoothing, focal loss, instance weights,
distillation from a teacher's soft labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlkit.data.types import Label, TaskSpec
from mtlkit.tasks.base import Combine, InstanceWeights, Task
from mtlkit.tasks.metrics import ClassificationMetrics, higher_is_better
from mtlkit.tasks.registry import TASK_TYPES, TaskType
from mtlkit.tasks.weighting import distillation_per_row, focal_factor


@dataclass
class ClassificationTask(Task):
    """Single-label classification with cross-entropy (optionally label-smoothed).

    The per-row loss is the (smoothed) cross-entropy ``CE``; with ``focal_gamma`` γ it is
    ``(1 − p_y)^γ · CE`` (focal loss); given a teacher's outputs it becomes
    ``(1 − α) · CE + α · T² · KL(p_teacher,T ‖ p_student,T)`` (distillation). The task loss is
    their mean over the labelled rows, weighted by the instance weights when there are any.

    Args:
        name: the task's name.
        num_classes: how many classes the head scores.
        label_smoothing: ε of label smoothing in [0, 1).
        primary_metric: the metric model selection and comparisons read.
        labels: the class names in class-index order, for predictions (empty: the indices).
        focal_gamma: γ ≥ 0 of the focal loss; ``None``: plain cross-entropy.
        distill_alpha: α in [0, 1], the weight of the teacher's soft labels.
        distill_temperature: T > 0, the softmax temperature of distillation.
        instance_weights: per-row loss weights from each batch (see :data:`InstanceWeights`).
    """

    name: str
    num_classes: int
    label_smoothing: float = 0.0
    primary_metric: str = "accuracy"
    labels: tuple[Label, ...] = ()
    focal_gamma: float | None = None
    distill_alpha: float = 0.0
    distill_temperature: float = 1.0
    instance_weights: InstanceWeights | None = None

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
        if self.focal_gamma is not None and not self.focal_gamma >= 0.0:
            raise ValueError(
                f"task {self.name!r}: focal_gamma must be ≥ 0, got {self.focal_gamma}."
            )
        if not 0.0 <= self.distill_alpha <= 1.0 or not self.distill_temperature > 0.0:
            raise ValueError(
                f"task {self.name!r}: distillation needs alpha in [0, 1] and temperature > 0, got "
                f"alpha={self.distill_alpha}, temperature={self.distill_temperature}."
            )
        higher_is_better(self.primary_metric)  # a metric without a known direction fails here

    @property
    def output_size(self) -> int:
        return self.num_classes

    def loss(
        self,
        output: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
        *,
        weights: Tensor | None = None,
        teacher: Tensor | None = None,
    ) -> Tensor:
        distilled = teacher is not None and self.distill_alpha > 0.0
        plain = self.focal_gamma is None and self.instance_weights is None and weights is None
        if mask is None and plain and not distilled:
            return F.cross_entropy(output, target, label_smoothing=self.label_smoothing)
        if mask is not None:
            target = target.masked_fill(~mask, 0)  # any class: the row is left out below
        per_row = F.cross_entropy(
            output, target, label_smoothing=self.label_smoothing, reduction="none"
        )
        if self.focal_gamma is not None:
            per_row = focal_factor(output, target, self.focal_gamma) * per_row
        if distilled:
            alpha = self.distill_alpha
            soft = distillation_per_row(output, teacher, self.distill_temperature)
            per_row = (1.0 - alpha) * per_row + alpha * soft
        return self.reduce(per_row, output, target, mask, weights)

    def combine_views(self, outputs: Tensor, how: Combine) -> Tensor:
        """Log-probabilities: of the vote shares (``vote``; a tie goes to the lower class
        index) or of the mean probabilities (``mean``) over the M views."""
        if how == "vote":
            votes = F.one_hot(outputs.argmax(dim=-1), self.num_classes).sum(dim=0)
            return (votes.float() / len(outputs)).log()
        return torch.softmax(outputs.float(), dim=-1).mean(dim=0).log()

    def metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(self.num_classes)

    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """``pred``: the most probable class (its name), ``prob``: its probability."""
        prob, index = output.detach().float().softmax(dim=1).max(dim=1)
        names = self.labels or range(self.num_classes)
        return {"pred": [names[i] for i in index.tolist()], "prob": prob.tolist()}


def _build(
    spec: TaskSpec,
    primary_metric: str,
    *,
    label_smoothing: float = 0.0,
    focal_gamma: float | None = None,
    distill_alpha: float = 0.0,
    distill_temperature: float = 1.0,
) -> ClassificationTask:
    if spec.num_classes is None:
        raise ValueError(f"task {spec.name!r}: a classification spec needs num_classes.")
    return ClassificationTask(
        spec.name,
        spec.num_classes,
        label_smoothing,
        primary_metric,
        tuple(spec.labels),
        focal_gamma,
        distill_alpha,
        distill_temperature,
    )


TASK_TYPES.register(
    "classification",
    TaskType(
        description="one class out of C (cross-entropy); labels may be strings",
        losses=("cross_entropy",),
        metrics=("accuracy", "macro_accuracy", "micro_f1", "macro_f1"),
        options={
            "label_smoothing": 0.0,
            "focal_gamma": None,
            "distill_alpha": 0.0,
            "distill_temperature": 1.0,
        },
        build=_build,
    ),
)
