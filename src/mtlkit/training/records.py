"""What one epoch of training did: :class:`EpochRecord`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EpochRecord:
    """What one epoch did: mean training losses, applied task weights, validation metrics.

    ``skipped`` counts the steps of the epoch skipped for non-finite values
    (``train.on_nonfinite: skip``); they are not in the means.
    """

    epoch: int
    train_loss: dict[str, float]
    task_weights: dict[str, float] | None
    val: dict[str, dict[str, float]] | None
    score: float | None
    lr: float
    seconds: float
    skipped: int = 0

    def brief(self, metric: str = "accuracy") -> dict[str, float | int | None]:
        """The few columns a report shows: losses, one validation metric per task, time."""
        row: dict[str, float | int | None] = {"epoch": self.epoch, "lr": self.lr}
        row.update({f"{t} loss": v for t, v in self.train_loss.items()})
        row.update({f"{t} val {metric}": m.get(metric) for t, m in (self.val or {}).items()})
        row["seconds"] = round(self.seconds, 1)
        return row

    def flat(self) -> dict[str, float | int | None]:
        """One flat row (for CSV and TensorBoard)."""
        row: dict[str, float | int | None] = {"epoch": self.epoch, "lr": self.lr}
        row.update({f"train/{t}/loss": v for t, v in self.train_loss.items()})
        for t, w in (self.task_weights or {}).items():
            row[f"train/{t}/weight"] = w
        for t, metrics in (self.val or {}).items():
            row.update({f"val/{t}/{k}": v for k, v in metrics.items()})
        row["val/score"] = self.score
        row["train/skipped_steps"] = self.skipped
        row["seconds"] = self.seconds
        return row
