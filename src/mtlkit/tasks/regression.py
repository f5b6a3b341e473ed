"""Regression: one value per row; MSE, L1 or Huber loss; MAE, RMSE and R².

The head learns the standardised target ``(y - mean) / std`` (mean and standard deviation of the
training targets, so that the loss has the same scale as the other tasks' and is balanced
fairly); its output is mapped back, ``output · std + mean``, for predictions and metrics, which
are in the target's own units. Huber's δ is 1 standard deviation of the training targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from mtlkit.data.types import TaskSpec
from mtlkit.tasks._accumulate import MetricSet, check_batch, labelled
from mtlkit.tasks.base import Combine, InstanceWeights, Task
from mtlkit.tasks.metrics import ScalarSummary, higher_is_better
from mtlkit.tasks.registry import TASK_TYPES, TaskType

LOSSES = ("mse", "l1", "huber")
"""The losses a regression task can be trained with."""


@dataclass(frozen=True)
class RegressionReport(ScalarSummary):
    """The metrics of one regression task, in the target's units.

    Attributes:
        mae: mean absolute error.
        rmse: root mean squared error.
        mse: mean squared error.
        r2: coefficient of determination, 1 − SSE/SST (NaN with fewer than two rows).
        num_samples: the number of labelled rows scored.
    """

    mae: float
    rmse: float
    mse: float
    r2: float
    num_samples: int
    SUMMARY: ClassVar[tuple[str, ...]] = ("mae", "rmse", "mse", "r2")

    def to_dict(self) -> dict[str, object]:
        """Every field as plain values, NaN as ``None``."""
        return self._json(num_samples=self.num_samples)


class RegressionMetrics(MetricSet):
    """Accumulates one regression task's predictions and targets over batches (torchmetrics'
    ``MeanAbsoluteError``, ``MeanSquaredError`` and ``R2Score``, in float64).

    Args:
        target_mean: added to ``output · target_std`` to read the head's output in target units.
        target_std: see ``target_mean``.
    """

    def __init__(self, target_mean: float = 0.0, target_std: float = 1.0) -> None:
        self.target_mean = target_mean
        self.target_std = target_std
        self._mae = MeanAbsoluteError().set_dtype(torch.float64)
        self._mse = MeanSquaredError().set_dtype(torch.float64)
        self._r2 = R2Score().set_dtype(torch.float64)
        super().__init__(self._mae, self._mse, self._r2)

    @torch.no_grad()
    def update(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add one batch: (N, 1) or (N,) head outputs, (N,) targets, rows where ``mask`` is
        True."""
        check_batch(output, target, mask, self.device)
        output, target = labelled(mask, output.reshape(len(output)), target)
        if output.numel():
            value = output.double() * self.target_std + self.target_mean
            for metric in (self._mae, self._mse, self._r2):
                metric.update(value, target.double())

    def compute(self) -> RegressionReport:
        """The report over everything added."""
        rows = int(self._mse.total)
        if not rows:
            return RegressionReport(math.nan, math.nan, math.nan, math.nan, 0)
        mse = float(self._mse.compute())
        return RegressionReport(
            mae=float(self._mae.compute()),
            rmse=math.sqrt(mse),
            mse=mse,
            r2=float(self._r2.compute()) if rows > 1 else math.nan,
            num_samples=rows,
        )


@dataclass
class RegressionTask(Task):
    """One real value per row, learnt standardised (see the module's documentation).

    Args:
        name: the task's name.
        criterion: the loss: ``mse``, ``l1`` or ``huber``.
        target_mean: the training targets' mean.
        target_std: the training targets' standard deviation (> 0).
        primary_metric: ``rmse`` (default), ``mae``, ``mse`` or ``r2``.
        instance_weights: per-row loss weights from each batch (``None``: all rows alike).
    """

    name: str
    criterion: str = "mse"
    target_mean: float = 0.0
    target_std: float = 1.0
    primary_metric: str = "rmse"
    instance_weights: InstanceWeights | None = None

    def __post_init__(self) -> None:
        if self.criterion not in LOSSES:
            raise ValueError(
                f"task {self.name!r}: unknown loss {self.criterion!r}; choose one of: "
                f"{', '.join(LOSSES)}."
            )
        if not (math.isfinite(self.target_std) and self.target_std > 0):
            raise ValueError(f"task {self.name!r}: target_std must be > 0, got {self.target_std}.")
        higher_is_better(self.primary_metric)

    @property
    def output_size(self) -> int:
        return 1

    def selection_value(self, report: Any) -> float:
        """The primary metric in units of the training targets' standard deviation (MAE and
        RMSE divided by it, MSE by its square), so that it averages with accuracies."""
        value = super().selection_value(report)
        if self.primary_metric == "r2":
            return value
        return value / self.target_std ** (2 if self.primary_metric == "mse" else 1)

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
        output = output.reshape(len(output))
        standard = (target.to(output.dtype) - self.target_mean) / self.target_std
        if mask is not None:
            standard = standard.masked_fill(~mask, 0.0)  # whatever the unlabelled rows hold
        if self.criterion == "mse":
            per_row = F.mse_loss(output, standard, reduction="none")
        elif self.criterion == "l1":
            per_row = F.l1_loss(output, standard, reduction="none")
        else:
            per_row = F.huber_loss(output, standard, reduction="none", delta=1.0)
        return self.reduce(per_row, output, target, mask, weights)

    def combine_views(self, outputs: Tensor, how: Combine) -> Tensor:
        """The median of the views' values (``vote``: the value most views agree on, robust to
        a stray view) or their mean (``mean``)."""
        if how == "vote":
            return outputs.median(dim=0).values
        return outputs.mean(dim=0)

    def metrics(self) -> RegressionMetrics:
        return RegressionMetrics(self.target_mean, self.target_std)

    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """``pred``: the predicted value, in the target's units."""
        value = output.detach().double().reshape(len(output)) * self.target_std + self.target_mean
        return {"pred": value.tolist()}


def _build(spec: TaskSpec, primary_metric: str) -> RegressionTask:
    return RegressionTask(
        spec.name, spec.loss or LOSSES[0], spec.target_mean, spec.target_std, primary_metric
    )


TASK_TYPES.register(
    "regression",
    TaskType(
        description="one value per row (MSE, L1 or Huber on the standardised target); MAE, "
        "RMSE, R²",
        losses=LOSSES,
        metrics=("rmse", "mae", "mse", "r2"),
        options={},
        build=_build,
    ),
)
