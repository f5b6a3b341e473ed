"""Teachers for distillation: soft labels from trained models, or from an average of the student.

A teacher gives, for a batch's inputs, the outputs of the tasks it teaches; the training loop
hands each task its teacher's outputs (:meth:`mtlkit.tasks.Task.loss`'s ``teacher``), and calls
:meth:`Teacher.update` after every optimizer step.

* :class:`FrozenTeachers` — trained networks (by default the single-task runs of
  ``mtlkit baselines``), never updated;
* :class:`EMATeacher` — self-distillation from an exponential moving average of the student's
  weights (and batch-norm statistics), built on PyTorch's ``AveragedModel``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mtlkit.models import Inputs, MultiTaskModel


class Teacher(Protocol):
    """The soft labels of some tasks."""

    tasks: tuple[str, ...]

    def to(self, device: torch.device | str) -> Teacher:
        """Move to ``device``; returns ``self``."""

    def outputs(self, inputs: Inputs) -> dict[str, Tensor]:
        """The outputs of :attr:`tasks` for a batch's inputs (no gradient)."""

    def update(self, student: MultiTaskModel) -> None:
        """Follow the student after an optimizer step (or do nothing)."""

    def state_dict(self) -> dict:
        """What changes during training (for an exact resume)."""

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""


def _task_outputs(model: MultiTaskModel, inputs: Inputs, tasks: Sequence[str]) -> dict[str, Tensor]:
    """``model``'s outputs of ``tasks`` for ``inputs`` (multi-input: those tasks' own inputs)."""
    if not isinstance(inputs, Tensor):
        inputs = {task: inputs[task] for task in tasks if task in inputs}
    outputs = model(inputs)
    return {task: outputs[task] for task in tasks if task in outputs}


class FrozenTeachers:
    """Trained networks, each teaching the tasks it has a head for; kept in eval mode.

    Args:
        models: task name -> the network whose head of that name teaches it (one network may
            teach several tasks; it runs once per batch).
    """

    def __init__(self, models: Mapping[str, MultiTaskModel]) -> None:
        for task, model in models.items():
            if task not in model.task_names:
                raise ValueError(
                    f"the teacher of task {task!r} has no head for it; its heads: "
                    f"{model.task_names}."
                )
        self.tasks = tuple(models)
        self._groups: list[tuple[MultiTaskModel, list[str]]] = []
        for task, model in models.items():
            group = next((g for m, g in self._groups if m is model), None)
            if group is None:
                self._groups.append((model.eval().requires_grad_(False), [task]))
            else:
                group.append(task)

    def to(self, device: torch.device | str) -> FrozenTeachers:
        """Move the networks to ``device``; returns ``self``."""
        for model, _ in self._groups:
            model.to(device)
        return self

    @torch.no_grad()
    def outputs(self, inputs: Inputs) -> dict[str, Tensor]:
        result: dict[str, Tensor] = {}
        for model, tasks in self._groups:
            result.update(_task_outputs(model, inputs, tasks))
        return result

    def update(self, student: MultiTaskModel) -> None:
        """A trained teacher does not change."""

    def state_dict(self) -> dict:
        """Nothing: a trained teacher does not change."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore."""


class EMATeacher:
    """An exponential moving average of the student, ``θ̄ ← decay·θ̄ + (1 − decay)·θ`` after
    every step (its batch-norm statistics too), teaching ``tasks`` (self-distillation).

    Args:
        student: the model being trained; the average starts as a copy of it.
        tasks: the tasks it teaches.
        decay: in (0, 1); closer to 1 averages over more steps.
    """

    def __init__(self, student: MultiTaskModel, tasks: Sequence[str], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}.")
        self.tasks = tuple(tasks)
        self.decay = decay
        self.average = AveragedModel(
            student, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
        self.average.requires_grad_(False)

    def to(self, device: torch.device | str) -> EMATeacher:
        """Move the average to ``device``; returns ``self``."""
        self.average.to(device)
        return self

    @torch.no_grad()
    def outputs(self, inputs: Inputs) -> dict[str, Tensor]:
        self.average.eval()
        return _task_outputs(self.average.module, inputs, self.tasks)

    def update(self, student: MultiTaskModel) -> None:
        self.average.update_parameters(student)

    def state_dict(self) -> dict:
        """The average's weights, buffers and count of averaged steps."""
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)
