"""Epoch metering in the loop: the epoch's loss and weight sums, the skipped steps, and the
progress bar with per-task running losses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor
from tqdm.auto import tqdm

from mtlkit.data import Batch
from mtlkit.training.finite import DivergedError
from mtlkit.training.hooks.base import Hook, StepState

if TYPE_CHECKING:
    from mtlkit.training.state import FitProgress

__all__ = ["EpochMeter"]


class EpochMeter(Hook):
    """Adds each applied step's losses, weights and unlabelled tasks to the epoch's sums (in the
    loop's :class:`~mtlkit.training.FitProgress`, saved with it), counts skipped steps, and shows
    a progress bar (``show``: main process, terminals only)."""

    name = "meter"

    def __init__(self, task_names: Sequence[str], show: bool) -> None:
        self.task_names = list(task_names)
        self.show = show
        self._bar: tqdm | None = None

    def batches(self, batches: Iterable[Batch], epoch: int) -> Iterable[Batch]:
        """``batches`` behind the epoch's progress bar."""
        self._bar = tqdm(
            batches, desc=f"epoch {epoch}", leave=False, disable=None if self.show else True
        )
        return self._bar

    def after_step(self, step: StepState, progress: FitProgress) -> None:
        if not step.applied:
            progress.skipped += 1
        else:
            assert step.reported is not None and step.unlabelled is not None
            progress.counted += 1
            progress.loss_sum = _add(progress.loss_sum, step.reported)
            progress.unlabelled = _add(progress.unlabelled, step.unlabelled)
            if step.weights is not None:
                progress.weight_sum = _add(progress.weight_sum, step.weights.detach())
        if self.show and self._bar is not None and progress.counted and progress.step % 20 == 0:
            assert progress.loss_sum is not None
            mean = (progress.loss_sum / progress.counted).tolist()
            self._bar.set_postfix({t: f"{v:.3f}" for t, v in zip(self.task_names, mean)})

    def end_epoch(self, progress: FitProgress) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if progress.step == 0:
            raise ValueError("the training split yields no batch; lower batch_size or add data.")
        if progress.counted == 0:
            raise DivergedError(
                f"epoch {progress.epoch}: every step had a non-finite loss or gradient and was "
                "skipped; lower the learning rate or try another balancing method."
            )

    def means(self, progress: FitProgress) -> tuple[Tensor, Tensor | None]:
        """The epoch's mean (K,) losses (over the steps where each task had a labelled row) and
        mean applied weights (None: the balancer applies none)."""
        assert progress.loss_sum is not None and progress.unlabelled is not None
        labelled = (progress.counted - progress.unlabelled).clamp(min=1)
        weights = progress.weight_sum
        return progress.loss_sum / labelled, (
            None if weights is None else weights / progress.counted
        )

    def epoch_fields(self, progress: FitProgress) -> dict[str, Any]:
        losses, weights = self.means(progress)
        unlabelled = progress.unlabelled
        names = self.task_names
        return {
            "train_loss": dict(zip(names, losses.tolist())),
            "task_weights": None if weights is None else dict(zip(names, weights.tolist())),
            "skipped": progress.skipped - sum(record.skipped for record in progress.history),
            "unlabelled_steps": dict(
                zip(names, [0] * len(names) if unlabelled is None else unlabelled.tolist())
            ),
        }


def _add(total: Tensor | None, value: Tensor) -> Tensor:
    """``total + value`` (a copy of ``value`` when nothing is summed yet)."""
    return value.clone() if total is None else total + value
