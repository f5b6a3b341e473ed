"""The cosine between task gradients over training: task conflict, measured while training.

Every ``every`` steps :class:`TaskCosineRecorder` computes the K×K Gramian ``G = J Jᵀ`` of the
per-task gradients of the shared parameters (:func:`mtlkit.balancing.engine.task_gramian`) and
keeps, for every pair of tasks, ``cos(gᵢ, gⱼ) = Gᵢⱼ / √(Gᵢᵢ Gⱼⱼ)``. A negative cosine means that
a step on one task's gradient raises the other task's loss to first order (conflict).

It is opt-in (``train.log_task_cosine_every``, default 0 = off) because it costs K extra backward
passes through the trunk on each recorded step, whatever the balancing method: with it off, the
training step is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

from torch import Tensor

from mtlkit.balancing.engine import task_gramian
from mtlkit.measure.probes import EveryNSteps, StepView
from mtlkit.measure.records import CosineSample


def pair_name(first: str, second: str) -> str:
    """The key of a pair of tasks in logs and metrics: ``"left~right"``."""
    return f"{first}~{second}"


def gramian_cosines(gramian: Tensor) -> Tensor:
    """The K×K cosine matrix ``Gᵢⱼ / √(Gᵢᵢ Gⱼⱼ)`` of a Gramian (NaN where a gradient is zero)."""
    norms = gramian.diagonal().clamp(min=0).sqrt()
    return gramian / (norms[:, None] * norms[None, :])


class TaskCosineRecorder(EveryNSteps):
    """Records the pairwise cosines of the task gradients every ``every`` steps (a
    :class:`~mtlkit.measure.probes.StepProbe`).

    Args:
        task_names: the tasks, in the order of the losses.
        every: record on steps ``every``, ``2·every``, … (≥ 1).
    """

    def __init__(self, task_names: Sequence[str], every: int) -> None:
        super().__init__(every)
        self.task_names = list(task_names)
        self.samples: list[CosineSample] = []
        self._pairs = list(combinations(range(len(self.task_names)), 2))

    def record(self, view: StepView) -> None:
        """Record the cosines of the step's task gradients (the graph is kept for its update)."""
        gramian = task_gramian(view.losses, view.model.shared_parameters(), view.features)
        values = gramian_cosines(gramian.double()).tolist()
        self.samples.append(
            CosineSample(
                step=view.step,
                epoch=view.epoch,
                cosines={
                    pair_name(self.task_names[i], self.task_names[j]): values[i][j]
                    for i, j in self._pairs
                },
            )
        )

    def epoch_mean(self, epoch: int) -> dict[str, float] | None:
        """The mean cosine per pair over the recorded steps of ``epoch`` (None: none recorded)."""
        samples = [sample for sample in self.samples if sample.epoch == epoch]
        if not samples:
            return None
        return {
            pair: sum(sample.cosines[pair] for sample in samples) / len(samples)
            for pair in samples[0].cosines
        }
