"""Surface normals: a unit vector per pixel; 1 − cosine on the valid pixels; angle errors.

A pixel is valid where its target normal is not the zero vector (how the preprocessed NYUv2 set
marks missing normals). The head's (N, 3, H, W) output is normalised per pixel; the loss is the
mean of ``1 − cos θ`` over valid pixels, θ the angle between predicted and true normal. The
metrics, over every valid pixel scored: the mean and median θ in degrees (lower better) and the
share of pixels with θ below 11.25°, 22.5° and 30°, in % (higher better).

The angles are accumulated in a histogram of :data:`BIN_DEGREES`-wide bins (a torchmetrics
``Metric``, so it sums across processes), not stored: the median is the centre of the bin that
holds the lower median angle (exact to ±``BIN_DEGREES``/2); the mean and the shares are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mtlkit.tasks._accumulate import MetricSet
from mtlkit.tasks._pixels import PixelTask, check_maps, maps, scored_rows
from mtlkit.tasks.base import Combine, InstanceWeights
from mtlkit.tasks.metrics import ScalarSummary
from mtlkit.tasks.registry import TASK_TYPES, TaskType

__all__ = ["BIN_DEGREES", "THRESHOLDS", "AngleErrors", "NormalsMetrics", "NormalsReport"]

BIN_DEGREES = 0.01
"""The width of the angle histogram's bins, in degrees (the median's resolution)."""

THRESHOLDS = (11.25, 22.5, 30.0)
"""The angles, in degrees, below which the ``within_*`` metrics count pixels."""


@dataclass(frozen=True)
class NormalsReport(ScalarSummary):
    """The metrics of one surface-normal task over its valid pixels.

    Attributes:
        mean_angle: mean angle error, degrees.
        median_angle: median angle error, degrees (±``BIN_DEGREES``/2).
        within_11_25: % of pixels with an angle error below 11.25°.
        within_22_5: % below 22.5°.
        within_30: % below 30°.
        num_pixels: the number of valid pixels scored.
        num_samples: the number of labelled images scored.
    """

    mean_angle: float
    median_angle: float
    within_11_25: float
    within_22_5: float
    within_30: float
    num_pixels: int
    num_samples: int
    SUMMARY: ClassVar[tuple[str, ...]] = (
        "mean_angle",
        "median_angle",
        "within_11_25",
        "within_22_5",
        "within_30",
    )

    def to_dict(self) -> dict[str, object]:
        """Every field as plain values, NaN as ``None``."""
        return self._json(num_pixels=self.num_pixels, num_samples=self.num_samples)


class AngleErrors(Metric):
    """Angle errors in degrees: their sum, a histogram, and the counts below each threshold."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        bins = round(180.0 / BIN_DEGREES)
        self.add_state("histogram", torch.zeros(bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        within = torch.zeros(len(THRESHOLDS), dtype=torch.long)
        self.add_state("within", within, dist_reduce_fx="sum")

    def update(self, degrees: Tensor) -> None:
        """Add a 1-D tensor of angles in [0, 180]."""
        index = (degrees / BIN_DEGREES).long().clamp_(0, len(self.histogram) - 1)
        self.histogram += torch.bincount(index, minlength=len(self.histogram))
        self.total += degrees.double().sum()
        limits = torch.tensor(THRESHOLDS, dtype=degrees.dtype, device=degrees.device)
        self.within += (degrees[:, None] < limits).sum(0)

    def compute(self) -> tuple[int, float, float, list[float]]:
        """(count, mean, median, % within each threshold); NaN with no angle."""
        count = int(self.histogram.sum())
        if not count:
            return 0, math.nan, math.nan, [math.nan] * len(THRESHOLDS)
        lower_median = (count - 1) // 2
        bin_index = int(torch.searchsorted(self.histogram.cumsum(0), lower_median, right=True))
        shares = [100.0 * int(n) / count for n in self.within]
        return count, float(self.total) / count, (bin_index + 0.5) * BIN_DEGREES, shares


def _unit(vectors: Tensor) -> Tensor:
    return F.normalize(vectors.float(), dim=1)


def _check_normals(task: str, output: Tensor, target: Tensor) -> None:
    check_maps(task, output, target, 3)
    if target.shape != output.shape or not target.is_floating_point():
        raise ValueError(
            f"task {task!r}: normal targets must be (N, 3, H, W) floats like the outputs "
            f"{tuple(output.shape)}, got {target.dtype} {tuple(target.shape)}."
        )


def _valid(target: Tensor) -> Tensor:
    """Where a (N, 3, H, W) normal map holds a normal: not the zero vector."""
    return target.abs().sum(1) > 0


class NormalsMetrics(MetricSet):
    """Accumulates one normal task's angle errors over the valid pixels of every batch."""

    def __init__(self) -> None:
        self._angles = AngleErrors()
        self._images = 0
        super().__init__(self._angles)

    @torch.no_grad()
    def update(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add one batch: (N, 3, H, W) outputs and targets (zero vector: invalid), images where
        ``mask`` is True."""
        _check_normals("normals", output, target)
        output, target = scored_rows(output, target, mask, self.device)
        cosine = (_unit(output) * _unit(target)).sum(1)[_valid(target)]
        self._angles.update(torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0))))
        self._images += len(target)

    def compute(self) -> NormalsReport:
        """The report over everything added."""
        count, mean, median, within = self._angles.compute()
        return NormalsReport(mean, median, *within, num_pixels=count, num_samples=self._images)


@dataclass
class NormalsTask(PixelTask):
    """A unit normal per pixel, 1 − cosine over the valid pixels.

    Args:
        name: the task's name.
        primary_metric: ``mean_angle`` (default), ``median_angle`` or a ``within_*`` share.
        instance_weights: per-image loss weights from each batch (``None``: all alike).
    """

    name: str
    primary_metric: str = "mean_angle"
    instance_weights: InstanceWeights | None = None

    @property
    def output_size(self) -> int:
        return 3

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
        _check_normals(self.name, output, target)
        per_pixel = 1.0 - (_unit(output) * _unit(target)).sum(1)
        return self.pixel_loss(per_pixel, _valid(target), output, target, mask, weights)

    def combine_views(self, outputs: Tensor, how: Combine) -> Tensor:
        """Per pixel, the mean of the views' unit normals (both ``vote`` and ``mean``: a normal
        has no class to vote for)."""
        return torch.stack([_unit(view) for view in outputs]).mean(0)

    def metrics(self) -> NormalsMetrics:
        return NormalsMetrics()

    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """``pred``: the (3, H, W) unit normal map of each row."""
        return {"pred": maps(_unit(output))}


TASK_TYPES.register(
    "normals",
    TaskType(
        description="a unit surface normal per pixel (1 − cosine on valid pixels); mean and "
        "median angle, % within 11.25°/22.5°/30°",
        losses=("cosine",),
        metrics=NormalsReport.SUMMARY,
        options={},
        delta_m_all=True,
        build=lambda spec, primary_metric: NormalsTask(spec.name, primary_metric),
    ),
)
