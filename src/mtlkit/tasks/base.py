"""The task interface: what one head predicts, how its loss is computed, how it is scored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import torch
from torch import Tensor

from mtlkit.tasks.metrics import higher_is_better


class TaskMetrics(Protocol):
    """A metric accumulator: add batches with ``update``, read the result with ``compute``."""

    def to(self, device: Any) -> TaskMetrics:
        """Move the accumulated state to ``device``; returns ``self``."""

    def update(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add one batch (rows where ``mask`` is False are left out)."""

    def compute(self) -> Any:
        """The task's report over everything added; it has the task's ``primary_metric``."""


def masked_mean(per_row: Tensor, mask: Tensor | None) -> Tensor:
    """The mean of the (N,) ``per_row`` losses over the rows where ``mask`` is True (all rows
    without a mask); 0, still on the graph, when no row is labelled.

    The other rows contribute exactly nothing, their gradient included, whatever they hold
    (``torch.where`` passes a zero gradient to the branch it does not take).
    """
    if mask is None:
        return per_row.mean()
    return torch.where(mask, per_row, 0.0).sum() / mask.sum().clamp(min=1)


class Task(ABC):
    """One task of a multi-task model.

    Attributes:
        name: the task's name; the key of its head, its targets and its metrics.
        primary_metric: the metric that model selection and comparisons read; its direction
            (:attr:`higher_is_better`) comes from :data:`mtlkit.tasks.metrics.METRIC_DIRECTIONS`.
    """

    name: str
    primary_metric: str

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger :attr:`primary_metric` is better."""
        return higher_is_better(self.primary_metric)

    def selection_value(self, report: Any) -> float:
        """The primary metric of ``report`` signed so that higher is better, on a scale that
        can be averaged with other tasks' (model selection averages it over tasks)."""
        value = float(getattr(report, self.primary_metric))
        return value if self.higher_is_better else -value

    @property
    @abstractmethod
    def output_size(self) -> int:
        """The number of outputs the task's head must produce."""

    @abstractmethod
    def loss(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """The scalar loss of a batch of head outputs against targets.

        ``mask`` ((N,) bool, True where the label is present) leaves the other rows out: the loss
        is the mean over the labelled rows, and 0 (still attached to the graph) when there are
        none. ``None``: every row is labelled.
        """

    @abstractmethod
    def metrics(self) -> TaskMetrics:
        """A fresh metric accumulator for this task."""

    @abstractmethod
    def predict(self, output: Tensor) -> dict[str, list[Any]]:
        """What the head's outputs mean, as columns of a prediction table (one value per row).

        The key ``"pred"`` holds the prediction (a class name, labels, a value); other keys
        (``"prob"``, …) hold probabilities. ``mtlkit predict`` writes ``<task>_<key>`` columns.
        """
