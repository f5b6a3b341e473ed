"""Binary classification: one logit, binary cross-entropy; accuracy, AUROC, F1 at 0.5.

The head outputs one logit per row; ``sigmoid(logit)`` is the probability of the positive label
and a row is predicted positive when it is above 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import BinaryAUROC, BinaryStatScores

from mtlkit.data.types import Label
from mtlkit.tasks._accumulate import MetricSet, check_batch, labelled
from mtlkit.tasks.base import Combine, InstanceWeights, Task, combine_sigmoid_views
from mtlkit.tasks.metrics import ScalarSummary, higher_is_better, ratio
from mtlkit.tasks.registry import TASK_TYPES, TaskType

THRESHOLD = 0.5
"""A row is predicted positive when its probability is above this (as torchmetrics counts)."""


@dataclass(frozen=True)
class BinaryReport(ScalarSummary):
    """The metrics of one binary task (positive: label 1).

    Attributes:
        accuracy: fraction of rows classified correctly at the threshold 0.5.
        auroc: area under the ROC curve (threshold-free); NaN when one label is absent.
        f1: F1 score of the positive label at 0.5, 2TP / (2TP + FP + FN).
        precision: TP / (TP + FP); NaN when nothing is predicted positive.
        recall: TP / (TP + FN); NaN when no row is positive.
        confusion_matrix: [[TN, FP], [FN, TP]] (rows true, columns predicted).
    """

    accuracy: float
    auroc: float
    f1: float
    precision: float
    recall: float
    confusion_matrix: list[list[int]]
    SUMMARY: ClassVar[tuple[str, ...]] = ("accuracy", "auroc", "f1", "precision", "recall")

    @property
    def support(self) -> list[int]:
        """Rows per true label: [negatives, positives]."""
        return [sum(row) for row in self.confusion_matrix]

    @property
    def num_samples(self) -> int:
        """The number of labelled rows scored."""
        return sum(self.support)

    def to_dict(self) -> dict[str, object]:
        """Every field as plain values, NaN as ``None``."""
        return self._json(
            confusion_matrix=[list(row) for row in self.confusion_matrix], support=self.support
        )


class BinaryMetrics(MetricSet):
    """Accumulates one binary task's logits (or probabilities) and 0/1 targets over batches.

    The counts at the threshold come from torchmetrics' ``BinaryStatScores``, AUROC from its
    exact ``BinaryAUROC``; both sum over processes under ``torch.distributed``.
    """

    def __init__(self) -> None:
        self._counts = BinaryStatScores(threshold=THRESHOLD, validate_args=False)
        self._auroc = BinaryAUROC(validate_args=False)
        super().__init__(self._counts, self._auroc)

    @torch.no_grad()
    def update(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add one batch: (N, 1) or (N,) logits, (N,) 0/1 targets, rows where ``mask`` is True."""
        check_batch(output, target, mask, self.device)
        output, target = labelled(mask, output.reshape(len(output)), target)
        if output.numel():
            probability = torch.sigmoid(output.float())
            self._counts.update(probability, target.long())
            self._auroc.update(probability, target.long())

    def compute(self) -> BinaryReport:
        """The report over everything added."""
        tp, fp, tn, fn, _ = (int(v) for v in self._counts.compute().tolist())
        both = tp + fn > 0 and tn + fp > 0
        return BinaryReport(
            accuracy=ratio(tp + tn, tp + tn + fp + fn),
            auroc=float(self._auroc.compute()) if both else math.nan,
            f1=ratio(2 * tp, 2 * tp + fp + fn),
            precision=ratio(tp, tp + fp),
            recall=ratio(tp, tp + fn),
            confusion_matrix=[[tn, fp], [fn, tp]],
        )


@dataclass
class BinaryTask(Task):
    """A yes/no task: one logit, binary cross-entropy with logits.

    Args:
        name: the task's name.
        primary_metric: ``auroc`` (default), ``accuracy``, ``f1``, ``precision`` or ``recall``.
        labels: the negative and the positive label, for predictions (empty: 0 and 1).
        instance_weights: per-row loss weights from each batch (``None``: all rows alike).
    """

    name: str
    primary_metric: str = "auroc"
    labels: tuple[Label, ...] = ()
    instance_weights: InstanceWeights | None = None

    def __post_init__(self) -> None:
        if self.labels and len(self.labels) != 2:
            raise ValueError(
                f"task {self.name!r}: a binary task has two labels (negative, positive), got "
                f"{list(self.labels)}."
            )
        higher_is_better(self.primary_metric)

    @property
    def output_size(self) -> int:
        return 1

    def loss(
        self,
        output: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
        *,
        weights: Tensor | None = None,
        teacher: Tensor | None = None,
    ) -> Tensor:
        self.refuse_teacher(teacher)
        per_row = F.binary_cross_entropy_with_logits(
            output.reshape(len(output)), target.to(output.dtype), reduction="none"
        )
        return self.reduce(per_row, output, target, mask, weights)

    def combine_views(self, outputs: Tensor, how: Combine) -> Tensor:
        """The logit of the share of views voting positive (``vote``; a tie is negative) or of
        the mean probability (``mean``)."""
        return combine_sigmoid_views(outputs, how)

    def metrics(self) -> BinaryMetrics:
        return BinaryMetrics()

    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """``pred``: the predicted label, ``prob``: the probability of the positive label."""
        probability = torch.sigmoid(output.detach().float().reshape(len(output)))
        negative, positive = self.labels or (0, 1)
        return {
            "pred": [positive if p > THRESHOLD else negative for p in probability.tolist()],
            "prob": probability.tolist(),
        }


TASK_TYPES.register(
    "binary",
    TaskType(
        description="yes or no (one logit, binary cross-entropy); accuracy, AUROC, F1 at 0.5",
        losses=("bce",),
        metrics=("auroc", "accuracy", "f1", "precision", "recall"),
        options={},
        build=lambda spec, primary_metric: BinaryTask(spec.name, primary_metric, spec.labels),
    ),
)
