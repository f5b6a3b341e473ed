"""The non-finite guard in the loop: every step's finiteness flags, read every few steps
(``stop``: the first bad step raises :class:`~mtlkit.training.DivergedError`), or read at
every step to skip a bad one (``skip``: the model, its buffers and the balancer are left as
before the step)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mtlkit.balancing import Balancer
from mtlkit.models import MultiTaskModel
from mtlkit.training.finite import NonFiniteGuard, gradients_finite
from mtlkit.training.hooks.base import Hook, StepState

if TYPE_CHECKING:
    from mtlkit.training.state import FitProgress

__all__ = ["ON_NONFINITE", "NonFiniteHook"]

ON_NONFINITE = ("stop", "skip")
"""What a step with a non-finite loss or gradient does: stop the run, or skip the step."""


class NonFiniteHook(Hook):
    """Reads the steps' finiteness flags and stops the run or skips the step.

    Args:
        guard: keeps the flags on the device and reads them every ``guard.every`` steps.
        on_nonfinite: ``stop`` or ``skip``.
        model: the trained model (``skip`` puts its buffers, e.g. BatchNorm's running
            statistics, back as before a skipped step).
        balancer: the balancer (``skip`` puts its state back too).
        parameters: the parameters whose gradients must be finite.
    """

    name = "nonfinite"

    def __init__(
        self,
        guard: NonFiniteGuard,
        on_nonfinite: str,
        model: MultiTaskModel,
        balancer: Balancer,
        parameters: Callable[[], list[Tensor]],
    ) -> None:
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}.")
        self.guard = guard
        self.on_nonfinite = on_nonfinite
        self.model = model
        self.balancer = balancer
        self.parameters = parameters
        self._before: dict[str, Any] | None = None

    def before_step(self, step: StepState) -> None:
        if self.on_nonfinite == "skip":  # what the step changes before its update
            self._before = {
                "balancer": copy.deepcopy(self.balancer.state_dict()),
                "buffers": [buffer.clone() for buffer in self.model.buffers()],
            }

    def allow_update(self, step: StepState) -> bool:
        assert step.reported is not None
        device = step.reported.device
        step.flags = self.guard.step_flags(
            step.reported, gradients_finite(self.parameters(), device)
        )
        before, self._before = self._before, None
        if before is not None and not bool(step.flags.all()):  # skip: undo the step
            self.balancer.load_state_dict(before["balancer"])
            with torch.no_grad():  # e.g. BatchNorm's running statistics, moved by the forward
                for buffer, saved in zip(self.model.buffers(), before["buffers"], strict=True):
                    buffer.copy_(saved)
            return False
        return True

    def after_step(self, step: StepState, progress: FitProgress) -> None:
        self._before = None  # an update refused before this hook was asked
        if step.flags is None:  # an update refused before the guard read the gradients
            assert step.reported is not None
            finite = torch.ones((), dtype=torch.bool, device=step.reported.device)
            step.flags = self.guard.step_flags(step.reported, finite)
        if self.on_nonfinite == "stop":
            self.guard.record(step.flags, f"step {progress.global_step} ({progress.label})")
        if progress.global_step % self.guard.every == 0:
            self.guard.check()

    def end_epoch(self, progress: FitProgress) -> None:
        self.guard.check()
