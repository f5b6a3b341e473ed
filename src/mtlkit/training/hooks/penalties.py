"""L1/L2 penalties in the loop: their gradients join the balanced gradient before the update,
and their values are averaged over the epoch's applied steps (see
:mod:`mtlkit.training.penalties`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mtlkit.training.hooks.base import Hook, StepState
from mtlkit.training.penalties import ParameterPenalties

if TYPE_CHECKING:
    from mtlkit.training.state import FitProgress

__all__ = ["PenaltiesHook"]


class PenaltiesHook(Hook):
    """Adds the penalties' gradients after the balancer's backward and records, per penalised
    group, the mean penalty over each epoch's applied steps (the record's ``penalties``)."""

    name = "penalties"

    def __init__(self, penalties: ParameterPenalties) -> None:
        self.penalties = penalties
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.values: dict[str, float] = {}
        """Per penalised group, the mean penalty over the last finished epoch's applied steps."""
        self._step_values: dict[str, float] = {}

    def allow_update(self, step: StepState) -> bool:
        self._step_values = self.penalties.apply()
        return True

    def after_update(self, step: StepState) -> None:
        self.steps += 1
        for group, value in self._step_values.items():
            self.sums[group] = self.sums.get(group, 0.0) + value

    def after_step(self, step: StepState, progress: FitProgress) -> None:
        self._step_values = {}  # a skipped step's values count nowhere

    def end_epoch(self, progress: FitProgress) -> None:
        steps = max(self.steps, 1)
        self.values = {group: value / steps for group, value in self.sums.items()}
        self.sums, self.steps = {}, 0

    def epoch_fields(self, progress: FitProgress) -> dict[str, Any]:
        return {"penalties": dict(self.values)}

    def state_dict(self) -> dict[str, Any]:
        """The epoch's penalty sums and applied steps so far, and the last epoch's means."""
        return {"sums": dict(self.sums), "steps": self.steps, "values": dict(self.values)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.steps = dict(state["sums"]), int(state["steps"])
        self.values = dict(state["values"])
