"""Step probes: measurements taken inside the training loop without changing it.

The trainer calls each probe's :meth:`StepProbe.record` on the steps it is :meth:`StepProbe.due`
for, after the forward pass and before the balancer's backward, with a :class:`StepView` of the
step. A probe may differentiate the losses (the graph is still whole) but must not write to
``.grad``, the parameters or the optimizer: the update is the same with or without probes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from mtlkit.data import Batch
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task


@dataclass(frozen=True)
class StepView:
    """One training step as a probe sees it, before its update.

    Attributes:
        step: the global step, from 1.
        epoch: the epoch, from 1.
        model: the model (train mode), its parameters as before the update.
        tasks: the tasks, in the order of ``losses``.
        batch: the step's batch, on the training device.
        features: the shared representation the heads read.
        losses: the K task losses, attached to the graph.
        lr: the learning rate of the optimizer's first parameter group.
    """

    step: int
    epoch: int
    model: MultiTaskModel
    tasks: Sequence[Task]
    batch: Batch
    features: Tensor
    losses: Sequence[Tensor]
    lr: float


class StepProbe(Protocol):
    """A measurement taken on some training steps."""

    def due(self, step: int) -> bool:
        """Whether to record on ``step``."""

    def record(self, view: StepView) -> None:
        """Measure the step; never change the model, its gradients or the optimizer."""


class EveryNSteps:
    """The schedule of a probe that records on steps ``every``, ``2·every``, … (≥ 1)."""

    def __init__(self, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                f"every must be an integer ≥ 1 (steps between records), got {every!r}."
            )
        self.every = every

    def due(self, step: int) -> bool:
        """Whether ``step`` is a recorded step."""
        return step % self.every == 0
