"""The hook protocol and what a step shows its hooks (:class:`StepState`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor

from mtlkit.data import Batch
from mtlkit.models import Inputs

if TYPE_CHECKING:
    from mtlkit.training.state import FitProgress

__all__ = ["Hook", "StepState"]


@dataclass
class StepState:
    """One training step as it goes, shared by the step function and the hooks.

    Attributes:
        number: the global step, from 1.
        epoch: the epoch, from 1.
        batch: the step's batch, on the training device.
        inputs: what the model reads (hooks may replace it: input noise).
        soft: task name → the teacher's outputs it distils.
        outputs: the heads' outputs (after the forward pass).
        features: the shared representation, or each task's own (multi-input).
        losses: the K task losses, attached to the graph.
        reported: the (K,) detached losses, replica means (after the backward pass).
        weights: the task weights the balancer applied, or None.
        unlabelled: (K,) int64, 1 for each task with no labelled row in the (global) batch.
        flags: the (K + 1,) finiteness flags of the step, once the guard has read them.
        applied: whether the optimizer stepped.
    """

    number: int
    epoch: int
    batch: Batch
    inputs: Inputs
    soft: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, Tensor] = field(default_factory=dict)
    features: Any = None
    losses: list[Tensor] = field(default_factory=list)
    reported: Tensor | None = None
    weights: Tensor | None = None
    unlabelled: Tensor | None = None
    flags: Tensor | None = None
    applied: bool = False


class Hook:
    """One concern of the training loop; every point does nothing unless overridden.

    Attributes:
        name: the hook's key in a checkpoint (unique among a trainer's hooks).
        per_process: the state differs between processes; a checkpoint keeps one per rank.
    """

    name: str = "hook"
    per_process: bool = False

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        """A context the forward pass and the losses run in (autocast, DDP's ``no_sync``)."""
        return contextlib.nullcontext()

    def before_step(self, step: StepState) -> None:
        """Before the forward pass (inside :meth:`forward_context`)."""

    def after_forward(self, step: StepState) -> None:
        """The heads' outputs are in ``step.outputs``; the losses are not computed yet."""

    def before_backward(self, step: StepState) -> None:
        """The task losses are in ``step.losses`` (graph whole); the balancer has not run."""

    def allow_update(self, step: StepState) -> bool:
        """After the balancer's backward: whether the optimizer may step (the first hook that
        says no ends the asking)."""
        return True

    def after_update(self, step: StepState) -> None:
        """After the optimizer stepped (applied steps only)."""

    def after_step(self, step: StepState, progress: FitProgress) -> None:
        """After every step, the loop's position (``progress``) already counts it."""

    def end_epoch(self, progress: FitProgress) -> None:
        """The training pass of ``progress.epoch`` is over (model selection runs here)."""

    def epoch_fields(self, progress: FitProgress) -> dict[str, Any]:
        """The :class:`~mtlkit.training.EpochRecord` fields this hook fills for the epoch that
        ``progress`` ends."""
        return {}

    def after_epoch(self, progress: FitProgress) -> None:
        """The epoch is recorded and ``progress`` is at the start of the next one."""

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs of this hook, as tensors and plain values (nothing by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
