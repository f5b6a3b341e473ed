"""Semantic segmentation: a class per pixel; cross-entropy with an ignore index; mIoU and pixel
accuracy.

Pixels whose target is :data:`IGNORE_INDEX` (−1, the void label of the preprocessed NYUv2 and
Cityscapes sets) count in neither the loss nor the metrics. Both metrics come from one confusion
matrix accumulated over every scored pixel (torchmetrics' ``MulticlassConfusionMatrix``, summed
across processes): pixel accuracy is its trace over its total, the IoU of class c is
``TP / (TP + FP + FN)``, and mIoU is the mean IoU over the classes that occur in the targets or
the predictions (a class absent from both has no IoU and is left out, as in LibMTL's NYUv2
tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from mtlkit.data.types import TaskSpec
from mtlkit.tasks._accumulate import MetricSet
from mtlkit.tasks._pixels import PixelTask, check_maps, maps, scored_rows
from mtlkit.tasks.base import Combine, InstanceWeights
from mtlkit.tasks.metrics import ScalarSummary, json_float, nanmean, ratio
from mtlkit.tasks.registry import TASK_TYPES, TaskType

IGNORE_INDEX = -1
"""The target of pixels that have no class (void); they are left out of loss and metrics."""


@dataclass(frozen=True)
class SegmentationReport(ScalarSummary):
    """The metrics of one segmentation task.

    Attributes:
        miou: mean intersection over union over the classes present in targets or predictions.
        pixel_accuracy: the share of scored pixels classified correctly.
        iou: per-class IoU (NaN for a class absent from targets and predictions).
        num_pixels: the number of scored (non-ignored) pixels.
        num_samples: the number of labelled images scored.
    """

    miou: float
    pixel_accuracy: float
    iou: list[float]
    num_pixels: int
    num_samples: int
    SUMMARY: ClassVar[tuple[str, ...]] = ("miou", "pixel_accuracy")

    @classmethod
    def from_confusion_matrix(cls, matrix: Tensor, num_samples: int) -> SegmentationReport:
        """Every metric from a C×C pixel confusion matrix (rows true, columns predicted)."""
        counts = matrix.double()
        tp = counts.diagonal()
        union = counts.sum(0) + counts.sum(1) - tp
        iou = [ratio(float(t), float(u)) for t, u in zip(tp, union)]
        total = int(counts.sum())
        return cls(
            miou=nanmean(iou),
            pixel_accuracy=ratio(float(tp.sum()), total),
            iou=iou,
            num_pixels=total,
            num_samples=num_samples,
        )

    def to_dict(self) -> dict[str, object]:
        """Every field as plain values, NaN as ``None``."""
        return self._json(
            iou=[json_float(v) for v in self.iou],
            num_pixels=self.num_pixels,
            num_samples=self.num_samples,
        )


class SegmentationMetrics(MetricSet):
    """Accumulates one segmentation task's pixel confusion matrix over batches."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._confmat = MulticlassConfusionMatrix(
            num_classes, ignore_index=IGNORE_INDEX, validate_args=False
        )
        self._images = 0
        super().__init__(self._confmat)

    @torch.no_grad()
    def update(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add one batch: (N, C, H, W) logits, (N, H, W) class maps (−1: ignored), images where
        ``mask`` is True."""
        check_maps("segmentation", output, target, self.num_classes)
        output, target = scored_rows(output, target, mask, self.device)
        _check_classes(target, self.num_classes)
        self._confmat.update(output.argmax(1).flatten(), target.flatten())
        self._images += len(target)

    def compute(self) -> SegmentationReport:
        """The report over everything added."""
        return SegmentationReport.from_confusion_matrix(self._confmat.compute(), self._images)


def _check_classes(target: Tensor, num_classes: int) -> None:
    if target.is_floating_point() or target.dim() != 3:
        raise ValueError(
            f"segmentation targets must be (N, H, W) integer class maps, got {target.dtype} "
            f"{tuple(target.shape)}."
        )
    bad = (target != IGNORE_INDEX) & ((target < 0) | (target >= num_classes))
    if bad.any():
        raise ValueError(
            f"segmentation targets hold {int(target[bad][0])}, outside [0, {num_classes}) and not "
            f"the ignore index {IGNORE_INDEX}: check num_classes, or map void pixels to "
            f"{IGNORE_INDEX}."
        )


@dataclass
class SegmentationTask(PixelTask):
    """A class per pixel, cross-entropy over the non-ignored pixels.

    Args:
        name: the task's name.
        num_classes: the classes a pixel can take (≥ 2; void pixels are −1).
        primary_metric: ``miou`` (default) or ``pixel_accuracy``.
        instance_weights: per-image loss weights from each batch (``None``: all alike).
    """

    name: str
    num_classes: int
    primary_metric: str = "miou"
    instance_weights: InstanceWeights | None = None

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(
                f"task {self.name!r}: num_classes must be ≥ 2, got {self.num_classes}."
            )
        super().__post_init__()

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
        self.refuse_teacher(teacher)
        check_maps(self.name, output, target, self.num_classes)
        per_pixel = F.cross_entropy(
            output.float(), target, ignore_index=IGNORE_INDEX, reduction="none"
        )
        return self.pixel_loss(per_pixel, target != IGNORE_INDEX, output, target, mask, weights)

    def combine_views(self, outputs: Tensor, how: Combine) -> Tensor:
        """Per pixel, the log of the share of views voting for each class (``vote``) or of the
        views' mean probability (``mean``)."""
        if how == "vote":
            votes = F.one_hot(outputs.argmax(2), self.num_classes).movedim(-1, 2).float()
            probability = votes.mean(0)
        else:
            probability = torch.softmax(outputs.float(), dim=2).mean(0)
        return probability.clamp_min(torch.finfo(torch.float32).tiny).log()

    def metrics(self) -> SegmentationMetrics:
        return SegmentationMetrics(self.num_classes)

    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """``pred``: the (H, W) class map of each row."""
        return {"pred": maps(output.argmax(1))}


def _build(spec: TaskSpec, primary_metric: str) -> SegmentationTask:
    if spec.num_classes is None:
        raise ValueError(f"task {spec.name!r}: a segmentation task needs num_classes.")
    return SegmentationTask(spec.name, spec.num_classes, primary_metric)


TASK_TYPES.register(
    "segmentation",
    TaskType(
        description="a class per pixel (cross-entropy, void pixels −1 ignored); mIoU, pixel "
        "accuracy",
        losses=("cross_entropy",),
        metrics=("miou", "pixel_accuracy"),
        options={},
        delta_m_all=True,
        build=_build,
    ),
)

__all__ = ["IGNORE_INDEX", "SegmentationMetrics", "SegmentationReport", "SegmentationTask"]
