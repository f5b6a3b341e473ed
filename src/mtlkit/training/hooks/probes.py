"""Probes in the loop: measurements of some training steps, taken after the losses and before
the balancer's backward, that never change the update; the task-gradient cosines are one (see
:mod:`mtlkit.training.probes` and :mod:`mtlkit.training.task_cosine`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch

from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.training.hooks.base import Hook, StepState
from mtlkit.training.probes import StepProbe, StepView
from mtlkit.training.task_cosine import CosineSample, TaskCosineRecorder

if TYPE_CHECKING:
    from mtlkit.training.state import FitProgress

__all__ = ["ProbesHook"]


class ProbesHook(Hook):
    """Shows each due probe a :class:`StepView` of the step before its update.

    Args:
        probes: the user's probes.
        cosines: the task-gradient cosine recorder, or None.
        model: the trained model.
        tasks: the tasks, in the order of the losses.
        optimizer: its first group's learning rate is the view's ``lr``.
    """

    name = "probes"

    def __init__(
        self,
        probes: Sequence[StepProbe],
        cosines: TaskCosineRecorder | None,
        model: MultiTaskModel,
        tasks: Sequence[Task],
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self.cosines = cosines
        self.probes = [*probes, *([cosines] if cosines is not None else [])]
        self.model = model
        self.tasks = list(tasks)
        self.optimizer = optimizer

    def before_backward(self, step: StepState) -> None:
        due = [probe for probe in self.probes if probe.due(step.number)]
        if not due:
            return
        lr = self.optimizer.param_groups[0]["lr"]
        view = StepView(
            step.number,
            step.epoch,
            self.model,
            self.tasks,
            step.batch,
            step.features,
            step.losses,
            lr,
        )
        for probe in due:
            probe.record(view)

    def epoch_fields(self, progress: FitProgress) -> dict[str, Any]:
        if self.cosines is None:
            return {}
        return {"task_cosine": self.cosines.epoch_mean(progress.epoch)}

    def state_dict(self) -> dict[str, Any]:
        """The recorded task-gradient cosines."""
        if self.cosines is None:
            return {}
        return {"task_cosine": [asdict(sample) for sample in self.cosines.samples]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.cosines is not None:
            self.cosines.samples = [CosineSample(**sample) for sample in state["task_cosine"]]
