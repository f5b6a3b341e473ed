"""Multi-label classification: one task, L yes/no labels per row; micro/macro F1 and mAP.

The head outputs L logits; label j applies when ``sigmoid(logit_j)`` is above 0.5. The loss
is the binary cross-entropy averaged over the L labels of each labelled row.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MultilabelAveragePrecision, MultilabelStatScores

from mtlkit.data.types import Label, TaskSpec
from mtlkit.tasks._accumulate import MetricSet, check_batch, labelled
from mtlkit.tasks.base import Combine, InstanceWeights, Task, combine_sigmoid_views
from mtlkit.tasks.metrics import ScalarSummary, higher_is_better, json_float, nanmean, ratio
from mtlkit.tasks.registry import TASK_TYPES, TaskType

THRESHOLD = 0.5
"""A label is predicted when its probability is above this (as torchmetrics counts)."""
SEPARATOR = "|"
"""Joins the predicted labels of a row in a prediction table."""


@dataclass(frozen=True)
class MultilabelReport(ScalarSummary):
    """The metrics of one multi-label task; per-label lists are indexed by label.

    Attributes:
        micro_f1: F1 from the counts summed over labels.
        macro_f1: mean of the per-label F1 over the labels that occur in targets or predictions.
        map: mean average precision (threshold-free) over the labels with a positive row.
        f1: per-label F1 at 0.5 (NaN for a label never present nor predicted).
        average_precision: per-label average precision (NaN for a label without positives).
        support: per-label number of positive rows.
        num_samples: the number of labelled rows scored.
        labels: the label names (their indices when not given).
    """

    micro_f1: float
    macro_f1: float
    map: float
    f1: list[float]
    average_precision: list[float]
    support: list[int]
    num_samples: int
    labels: list[str]
    SUMMARY: ClassVar[tuple[str, ...]] = ("micro_f1", "macro_f1", "map")

    def to_dict(self) -> dict[str, object]:
        """Every field as plain values, NaN as ``None``."""
        return self._json(
            f1=[json_float(v) for v in self.f1],
            average_precision=[json_float(v) for v in self.average_precision],
            support=list(self.support),
            num_samples=self.num_samples,
            labels=list(self.labels),
        )


class MultilabelMetrics(MetricSet):
    """Accumulates one multi-label task's (N, L) logits and 0/1 targets over batches.

    Counts at the threshold come from torchmetrics' ``MultilabelStatScores``, average precision
    from its exact ``MultilabelAveragePrecision``; both sum over processes when distributed.

    Args:
        num_labels: L.
        labels: the L label names for the report (default: their indices).
    """

    def __init__(self, num_labels: int, labels: Sequence[Label] = ()) -> None:
        self.num_labels = num_labels
        self.labels = [str(label) for label in labels] or [str(j) for j in range(num_labels)]
        self._counts = MultilabelStatScores(
            num_labels, threshold=THRESHOLD, average=None, validate_args=False
        )
        self._precision = MultilabelAveragePrecision(num_labels, average=None, validate_args=False)
        self._rows = 0
        super().__init__(self._counts, self._precision)

    @torch.no_grad()
    def update(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add one batch: (N, L) logits, (N, L) 0/1 targets, rows where ``mask`` is True."""
        check_batch(output, target, mask, self.device)
        if output.dim() != 2 or output.shape[1] != self.num_labels or target.shape != output.shape:
            raise ValueError(
                f"output and target must both be (N, {self.num_labels}), got "
                f"{tuple(output.shape)} and {tuple(target.shape)}."
            )
        output, target = labelled(mask, output, target)
        if output.numel():
            probability = torch.sigmoid(output.float())
            self._counts.update(probability, target.long())
            self._precision.update(probability, target.long())
            self._rows += len(output)

    def compute(self) -> MultilabelReport:
        """The report over everything added."""
        counts = self._counts.compute().reshape(self.num_labels, 5).tolist()
        tp, fp, _, fn, support = (list(map(int, column)) for column in zip(*counts))
        f1 = [ratio(2 * t, 2 * t + p + n) for t, p, n in zip(tp, fp, fn)]
        if any(support):
            with warnings.catch_warnings():  # labels without positives: NaN below, not 0
                warnings.simplefilter("ignore", UserWarning)
                precision = self._precision.compute().tolist()
        else:
            precision = [math.nan] * self.num_labels
        precision = [p if s else math.nan for p, s in zip(precision, support)]
        return MultilabelReport(
            micro_f1=ratio(2 * sum(tp), 2 * sum(tp) + sum(fp) + sum(fn)),
            macro_f1=nanmean(f1),
            map=nanmean(precision),
            f1=f1,
            average_precision=precision,
            support=support,
            num_samples=self._rows,
            labels=self.labels,
        )


@dataclass
class MultilabelTask(Task):
    """L yes/no labels per row: L logits, binary cross-entropy averaged over the labels.

    Args:
        name: the task's name.
        labels: the L label names.
        primary_metric: ``map`` (default), ``micro_f1`` or ``macro_f1``.
        instance_weights: per-row loss weights from each batch (``None``: all rows alike).
    """

    name: str
    labels: tuple[Label, ...]
    primary_metric: str = "map"
    instance_weights: InstanceWeights | None = None

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError(f"task {self.name!r}: a multilabel task needs at least one label.")
        higher_is_better(self.primary_metric)

    @property
    def output_size(self) -> int:
        return len(self.labels)

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
            output, target.to(output.dtype), reduction="none"
        ).mean(dim=1)
        return self.reduce(per_row, output, target, mask, weights)

    def combine_views(self, outputs: Tensor, how: Combine) -> Tensor:
        """Per label, the logit of the share of views voting it applies (``vote``; a tie does
        not apply) or of its mean probability (``mean``)."""
        return combine_sigmoid_views(outputs, how)

    def metrics(self) -> MultilabelMetrics:
        return MultilabelMetrics(len(self.labels), self.labels)

    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """``pred``: the labels that apply, joined by ``|``; ``prob_<label>``: each label's
        probability."""
        probability = torch.sigmoid(output.detach().float())
        chosen = (probability > THRESHOLD).tolist()
        columns: dict[str, list[Any]] = {
            "pred": [
                SEPARATOR.join(str(label) for label, on in zip(self.labels, row) if on)
                for row in chosen
            ]
        }
        for j, label in enumerate(self.labels):
            columns[f"prob_{label}"] = probability[:, j].tolist()
        return columns


def _build(spec: TaskSpec, primary_metric: str) -> MultilabelTask:
    return MultilabelTask(spec.name, tuple(spec.labels), primary_metric)


TASK_TYPES.register(
    "multilabel",
    TaskType(
        description="L yes/no labels per row (one logit each, binary cross-entropy); micro and "
        "macro F1, mAP",
        losses=("bce",),
        metrics=("map", "micro_f1", "macro_f1"),
        options={},
        build=_build,
    ),
)
