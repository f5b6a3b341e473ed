"""Checkpoints and stop signals in the loop: the whole state handed to a checkpoint callback
every few steps and at the end of every epoch, and a stop on SIGINT/SIGTERM after one."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from mtlkit.training.distributed import ProcessGroupReplicas
from mtlkit.training.finite import NonFiniteGuard
from mtlkit.training.hooks.base import Hook, StepState
from mtlkit.training.signals import StopSignals, TrainingInterrupted

if TYPE_CHECKING:
    from mtlkit.training.state import FitProgress

__all__ = ["CheckpointHook"]


class CheckpointHook(Hook):
    """Calls ``checkpoint`` with the loop's progress every ``every`` steps (0: only at the end of
    each epoch) and, when ``stop`` was signalled, once more before raising
    :class:`TrainingInterrupted`; only ever after every step so far was read finite.

    Args:
        checkpoint: writes the training state at a progress, or None (no checkpoints).
        every: steps between two checkpoints within an epoch (0: none within).
        stop: the signals that ask the run to stop, or None.
        replicas: the processes training together (they agree on stopping at the steps where
            the flags are read), or None.
        guard: the non-finite guard, read before every checkpoint.
        epoch_seconds: the seconds spent in the epoch so far.
    """

    name = "checkpoints"

    def __init__(
        self,
        checkpoint: Callable[[FitProgress], None] | None,
        every: int,
        stop: StopSignals | None,
        replicas: ProcessGroupReplicas | None,
        guard: NonFiniteGuard,
        epoch_seconds: Callable[[], float],
    ) -> None:
        self.checkpoint = checkpoint
        self.every = every
        self.stop = stop
        self.replicas = replicas
        self.guard = guard
        self.epoch_seconds = epoch_seconds

    def after_step(self, step: StepState, progress: FitProgress) -> None:
        if self.checkpoint is not None and self.every and progress.global_step % self.every == 0:
            self.save(progress)
        if self._stop_agreed(progress.global_step % self.guard.every == 0):
            self._stop(progress, save=True)

    def after_epoch(self, progress: FitProgress) -> None:
        self.save(progress)
        if self._stop_agreed(True):
            self._stop(progress, save=False)

    def save(self, progress: FitProgress) -> None:
        """Hand ``progress`` to the checkpoint once every flag so far has been read good."""
        if self.checkpoint is None:
            return
        self.guard.check()
        progress.epoch_seconds = self.epoch_seconds()
        self.checkpoint(progress)

    def _stop_agreed(self, due: bool) -> bool:
        """Whether to stop now: at every step alone; across processes, at the steps where the
        flags are read, once any process received a signal."""
        if self.stop is None:
            return False
        if self.replicas is None:
            return self.stop.requested()
        return due and self.replicas.any(self.stop.requested())

    def _stop(self, progress: FitProgress, save: bool) -> None:
        assert self.stop is not None
        if save:
            self.save(progress)
        signum = self.stop.received or signal.SIGTERM  # only another process received one
        raise TrainingInterrupted(f"stopped at {progress.label} on signal {signum}", signum)
