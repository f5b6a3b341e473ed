"""Probes in the loop: measurements of some training steps, taken after the losses and before
the balancer's backward, that never change the update; the task-gradient cosines are one (see
:mod:`mtlkit.measure.probes` and :mod:`mtlkit.measure.task_cosine`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch

from mtlkit.measure.probes import StepProbe, StepView
from mtlkit.measure.records import CosineSample
from mtlkit.measure.task_cosine import TaskCosineRecorder
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.training.hooks.base import Hook, StepState

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
        self.user_probes = list(probes)
        self.probes = [*probes, *([cosines] if cosines is not None else [])]
        self.model = model
        self.tasks = list(tasks)
        self.optimizer = optimizer
        self.device = next(model.parameters()).device

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
        # a probe that runs the model in train mode (a look-ahead) draws dropout masks from the
        # global generators: it draws from a copy, so the training's draws stay as they were
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for probe in due:
                probe.record(view)

    def epoch_fields(self, progress: FitProgress) -> dict[str, Any]:
        if self.cosines is None:
            return {}
        return {"task_cosine": self.cosines.epoch_mean(progress.epoch)}

    def state_dict(self) -> dict[str, Any]:
        """The recorded task-gradient cosines and each user probe's own state (a probe that
        gathers measurements has ``state_dict``/``load_state_dict``)."""
        state: dict[str, Any] = {"probes": [_state(probe) for probe in self.user_probes]}
        if self.cosines is not None:
            state["task_cosine"] = [asdict(sample) for sample in self.cosines.samples]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for probe, saved in zip(self.user_probes, state["probes"], strict=True):
            if saved:
                probe.load_state_dict(saved)  # type: ignore[attr-defined]
        if self.cosines is not None:
            self.cosines.samples = [CosineSample(**sample) for sample in state["task_cosine"]]


def _state(probe: StepProbe) -> dict[str, Any]:
    """A probe's ``state_dict()``, or nothing for a probe that keeps none."""
    save = getattr(probe, "state_dict", None)
    return {} if save is None else save()
