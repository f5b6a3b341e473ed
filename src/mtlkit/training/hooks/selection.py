"""Model selection in the loop: after every epoch, the validation metrics and score, and the
weights of the best epoch so far (kept in the loop's progress)."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mtlkit.models import MultiTaskModel
from mtlkit.training.hooks.base import Hook

if TYPE_CHECKING:
    from mtlkit.training.state import FitProgress

__all__ = ["SelectionHook"]


class SelectionHook(Hook):
    """Scores the model on validation after every epoch and keeps the best epoch's weights.

    An epoch whose score is NaN cannot be ranked: it is never selected, and a warning names it
    and the epoch kept instead (its record's ``score`` is NaN).

    Args:
        validate: the validation reports of the model as it is now (task name → report).
        score: one number from the reports, higher is better (NaN: undefined).
        model: the trained model.
    """

    name = "selection"

    def __init__(
        self,
        validate: Callable[[], dict[str, Any]],
        score: Callable[[dict[str, Any]], float],
        model: MultiTaskModel,
    ) -> None:
        self.validate = validate
        self.score = score
        self.model = model
        self._fields: dict[str, Any] = {}

    def end_epoch(self, progress: FitProgress) -> None:
        reports = self.validate()
        score = self.score(reports)
        if math.isnan(score):
            best = progress.best_epoch
            kept = f"epoch {best}" if best else "the last epoch unless a later one scores"
            warnings.warn(
                f"epoch {progress.epoch}: the validation score is NaN (every task's primary "
                "metric is undefined on validation), so model selection cannot rank this epoch "
                f"and keeps {kept}; check the validation split and the tasks' metrics.",
                stacklevel=2,
            )
        if score > progress.best_score:
            progress.best_score, progress.best_epoch = score, progress.epoch
            progress.best_model = copy.deepcopy(self.model.state_dict())
        self._fields = {
            "val": {name: report.summary() for name, report in reports.items()},
            "score": score,
        }

    def epoch_fields(self, progress: FitProgress) -> dict[str, Any]:
        return dict(self._fields)
