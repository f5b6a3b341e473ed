"""Depth estimation: a distance per pixel; L1 on the valid pixels; absolute and relative error.

A pixel is valid where its target depth is finite and > 0 (0 is "no measurement", as in the
preprocessed NYUv2 and Cityscapes sets). Over every valid pixel scored, ``abs_err`` is the mean
of ``|d̂ − d|`` and ``rel_err`` the mean of ``|d̂ − d| / d`` (torchmetrics' ``MeanAbsoluteError``
and ``MeanAbsolutePercentageError``, a fraction, not %), both in the targets' units and lower
better. The head predicts the depth itself (no standardisation), as the literature trains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.regression import MeanAbsoluteError, MeanAbsolutePercentageError

from mtlkit.tasks._accumulate import MetricSet
from mtlkit.tasks._pixels import PixelTask, check_maps, maps, scored_rows
from mtlkit.tasks.base import Combine, InstanceWeights
from mtlkit.tasks.metrics import ScalarSummary
from mtlkit.tasks.registry import TASK_TYPES, TaskType

__all__ = ["DepthMetrics", "DepthReport", "DepthTask", "valid_depth"]


@dataclass(frozen=True)
class DepthReport(ScalarSummary):
    """The metrics of one depth task over its valid pixels.

    Attributes:
        abs_err: mean absolute error, in the targets' units.
        rel_err: mean absolute error relative to the true depth (a fraction).
        num_pixels: the number of valid pixels scored.
        num_samples: the number of labelled images scored.
    """

    abs_err: float
    rel_err: float
    num_pixels: int
    num_samples: int
    SUMMARY: ClassVar[tuple[str, ...]] = ("abs_err", "rel_err")

    def to_dict(self) -> dict[str, object]:
        """Every field as plain values, NaN as ``None``."""
        return self._json(num_pixels=self.num_pixels, num_samples=self.num_samples)


def valid_depth(target: Tensor) -> Tensor:
    """Where a (N, H, W) depth map holds a measurement: finite and > 0."""
    return torch.isfinite(target) & (target > 0)


def _depth_map(task: str, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(N, H, W) predicted and true depth from (N, 1, H, W) outputs and (N[, 1], H, W) targets."""
    check_maps(task, output, target, 1)
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if target.dim() != 3 or not target.is_floating_point():
        raise ValueError(
            f"task {task!r}: depth targets must be (N, H, W) or (N, 1, H, W) floats, got "
            f"{target.dtype} {tuple(target.shape)}."
        )
    return output[:, 0], target


class DepthMetrics(MetricSet):
    """Accumulates one depth task's errors over the valid pixels of every batch (float64)."""

    def __init__(self) -> None:
        self._abs = MeanAbsoluteError().set_dtype(torch.float64)
        self._rel = MeanAbsolutePercentageError().set_dtype(torch.float64)
        self._images = 0
        super().__init__(self._abs, self._rel)

    @torch.no_grad()
    def update(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add one batch: (N, 1, H, W) outputs, (N[, 1], H, W) targets (≤ 0 or NaN: invalid),
        images where ``mask`` is True."""
        output, target = _depth_map("depth", *scored_rows(output, target, mask, self.device))
        valid = valid_depth(target)
        if valid.any():
            predicted, true = output[valid].double(), target[valid].double()
            self._abs.update(predicted, true)
            self._rel.update(predicted, true)
        self._images += len(target)

    def compute(self) -> DepthReport:
        """The report over everything added."""
        pixels = int(self._abs.total)
        if not pixels:
            return DepthReport(math.nan, math.nan, 0, self._images)
        return DepthReport(
            abs_err=float(self._abs.compute()),
            rel_err=float(self._rel.compute()),
            num_pixels=pixels,
            num_samples=self._images,
        )


@dataclass
class DepthTask(PixelTask):
    """A depth per pixel, L1 over the valid pixels.

    Args:
        name: the task's name.
        primary_metric: ``abs_err`` (default) or ``rel_err``.
        instance_weights: per-image loss weights from each batch (``None``: all alike).
    """

    name: str
    primary_metric: str = "abs_err"
    instance_weights: InstanceWeights | None = None

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
        predicted, true = _depth_map(self.name, output, target)
        valid = valid_depth(true)
        per_pixel = F.l1_loss(predicted.float(), torch.where(valid, true, 0.0), reduction="none")
        return self.pixel_loss(per_pixel, valid, output, target, mask, weights)

    def combine_views(self, outputs: Tensor, how: Combine) -> Tensor:
        """Per pixel, the median of the views' depths (``vote``) or their mean (``mean``)."""
        return outputs.median(dim=0).values if how == "vote" else outputs.mean(dim=0)

    def metrics(self) -> DepthMetrics:
        return DepthMetrics()

    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """``pred``: the (H, W) depth map of each row."""
        return {"pred": maps(output[:, 0].float())}


TASK_TYPES.register(
    "depth",
    TaskType(
        description="a depth per pixel (L1 on valid pixels, target > 0); absolute and relative "
        "error",
        losses=("l1",),
        metrics=("abs_err", "rel_err"),
        options={},
        delta_m_all=True,
        build=lambda spec, primary_metric: DepthTask(spec.name, primary_metric),
    ),
)
