"""The task interface: what one head predicts, how its loss is computed, how it is scored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

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
