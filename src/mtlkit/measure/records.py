"""What training records: one epoch (:class:`EpochRecord`) and the task-gradient cosines of one
step (:class:`CosineSample`); plain values, read by evaluation's plots and reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class EpochRecord:
    """What one epoch did: mean training losses, applied task weights, validation metrics.

    ``unlabelled_steps`` counts per task the steps whose batch had no labelled row for it (zero
    loss there; the task's mean loss is over its other steps). ``skipped`` counts the steps
    skipped for non-finite values (``train.on_nonfinite: skip``); they are not in the means.
    ``step_seconds`` is the training pass's time divided by its steps (validation excluded);
    ``task_cosine`` the mean gradient cosine per pair of tasks over the epoch's recorded steps
    (None unless the trainer records them, see :class:`~mtlkit.training.TaskCosineRecorder`).
    ``lr`` is the first parameter group's learning rate; ``lrs`` each named group's, when the
    optimizer has several (per-task or per-layer-group learning rates). ``penalties`` is the mean
    L1/L2 penalty of each penalised parameter group over the epoch's applied steps (see
    :class:`~mtlkit.training.ParameterPenalties`).
    """

    epoch: int
    train_loss: dict[str, float]
    task_weights: dict[str, float] | None
    val: dict[str, dict[str, float]] | None
    score: float | None
    lr: float
    seconds: float
    skipped: int = 0
    unlabelled_steps: dict[str, int] = field(default_factory=dict)
    step_seconds: float | None = None
    task_cosine: dict[str, float] | None = None
    lrs: dict[str, float] = field(default_factory=dict)
    penalties: dict[str, float] = field(default_factory=dict)

    def brief(self, metric: str | Mapping[str, str] = "accuracy") -> dict[str, float | int | None]:
        """The few columns a report shows: losses, one validation metric per task (``metric``,
        or task name -> its metric), time."""
        row: dict[str, float | int | None] = {"epoch": self.epoch, "lr": self.lr}
        row.update({f"{t} loss": v for t, v in self.train_loss.items()})
        for t, m in (self.val or {}).items():
            name = metric if isinstance(metric, str) else metric[t]
            row[f"{t} val {name}"] = m.get(name)
        row["seconds"] = round(self.seconds, 1)
        return row

    def flat(self) -> dict[str, float | int | None]:
        """One flat row (for CSV and TensorBoard)."""
        row: dict[str, float | int | None] = {"epoch": self.epoch, "lr": self.lr}
        row.update({f"lr/{name}": v for name, v in self.lrs.items()})
        row.update({f"train/{t}/loss": v for t, v in self.train_loss.items()})
        row.update({f"train/{t}/unlabelled_steps": n for t, n in self.unlabelled_steps.items()})
        for t, w in (self.task_weights or {}).items():
            row[f"train/{t}/weight"] = w
        for pair, cosine in (self.task_cosine or {}).items():
            row[f"train/cosine/{pair}"] = cosine
        row.update({f"train/penalty/{g}": v for g, v in self.penalties.items()})
        for t, metrics in (self.val or {}).items():
            row.update({f"val/{t}/{k}": v for k, v in metrics.items()})
        row["val/score"] = self.score
        row["train/skipped_steps"] = self.skipped
        row["seconds"] = self.seconds
        row["step_seconds"] = self.step_seconds
        return row


@dataclass(frozen=True)
class CosineSample:
    """The pairwise gradient cosines at one training step.

    Attributes:
        step: the global step (1-based) the gradients were taken at, before its update.
        epoch: the epoch of that step.
        cosines: ``pair_name(a, b)`` → cos(∇L_a, ∇L_b) on the shared parameters.
    """

    step: int
    epoch: int
    cosines: dict[str, float]
