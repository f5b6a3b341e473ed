"""The containers a benchmark is delivered in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mtlkit.data.errors import DataError


@dataclass(frozen=True)
class TaskSpec:
    """One classification task of a benchmark: its name (the key of its targets) and classes."""

    name: str
    num_classes: int


@dataclass
class Split:
    """One split of a multi-task benchmark, held in memory.

    Attributes:
        inputs: (N, C, H, W) float32 images in [0, 1].
        targets: task name -> (N,) int64 class indices.
    """

    inputs: torch.Tensor
    targets: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        for task, target in self.targets.items():
            if target.shape != (len(self.inputs),):
                raise DataError(
                    f"split: targets of task {task!r} have shape {tuple(target.shape)}, expected "
                    f"({len(self.inputs)},), one per input. Build them from the same samples."
                )

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, tasks: Sequence[str]) -> Split:
        """The same inputs (not copied) with the targets of ``tasks`` only, in that order."""
        unknown = [task for task in tasks if task not in self.targets]
        if unknown:
            raise DataError(
                f"split: unknown task(s) {', '.join(map(repr, unknown))}. Choose among: "
                f"{', '.join(self.targets)}."
            )
        return Split(self.inputs, {task: self.targets[task] for task in tasks})


@dataclass
class MultiTaskData:
    """A multi-task benchmark ready for training.

    Attributes:
        name: the benchmark's name (e.g. ``"multi-mnist"``).
        protocol: how it was built (e.g. ``"sener"``, ``"pareto"``).
        tasks: its tasks, in the order of the targets.
        train: the training split.
        val: the validation split carved from train, or ``None``.
        test: the test split.
        fingerprint: sha256 identifying exactly this data (see :func:`load_benchmark`).
    """

    name: str
    protocol: str
    tasks: list[TaskSpec]
    train: Split
    val: Split | None
    test: Split
    fingerprint: str
