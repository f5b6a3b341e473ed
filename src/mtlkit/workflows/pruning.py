"""The training loop's link to an Optuna trial: each epoch's validation score reported, and a
clean stop when the pruner says the trial is clearly behind (``tune``'s early stopping)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mtlkit.training.hooks import Hook

if TYPE_CHECKING:
    from mtlkit.training.state import FitProgress

__all__ = ["PruningHook"]


class PruningHook(Hook):
    """Reports every epoch's validation score to ``trial`` and stops the run when its pruner
    says so, by raising :class:`optuna.TrialPruned` (the run folder keeps its last checkpoint
    and no ``metrics.json``: a pruned trial is never a result).

    An epoch whose score is NaN (undefined on validation) is not reported. The hook has no state
    to checkpoint: a resumed run reports from the epoch it continues at.
    """

    name = "pruning"

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def after_epoch(self, progress: FitProgress) -> None:
        import optuna

        record = progress.history[-1]
        if record.score is None or math.isnan(record.score):
            return
        self.trial.report(float(record.score), record.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned after epoch {record.epoch}: validation score {record.score:.4f} is "
                "behind the other trials at that epoch"
            )
