"""Distillation in the loop: the teachers' outputs for each batch, and the teachers following
the student after each applied step (see :mod:`mtlkit.training.distill`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtlkit.models import MultiTaskModel
from mtlkit.training.distill import Teacher
from mtlkit.training.hooks.base import Hook, StepState

__all__ = ["TeachersHook"]


class TeachersHook(Hook):
    """Gives the tasks their teachers' outputs (``step.soft``) and updates the teachers (an
    averaged model follows the student) after every applied step."""

    name = "teachers"

    def __init__(self, teachers: Sequence[Teacher], student: MultiTaskModel) -> None:
        self.teachers = list(teachers)
        self.student = student

    def before_step(self, step: StepState) -> None:
        for teacher in self.teachers:
            step.soft.update(teacher.outputs(step.inputs))

    def after_update(self, step: StepState) -> None:
        for teacher in self.teachers:
            teacher.update(self.student)

    def state_dict(self) -> dict[str, Any]:
        """Each teacher's state (an averaged model's weights and count)."""
        return {"teachers": [teacher.state_dict() for teacher in self.teachers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for teacher, saved in zip(self.teachers, state["teachers"], strict=True):
            teacher.load_state_dict(saved)
