"""The containers data is delivered in: splits held in memory, their batches, the tasks' specs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mtlkit.data.errors import DataError


@dataclass(frozen=True)
class TaskSpec:
    """One task of a dataset: its name (the key of its targets) and its number of classes."""

    name: str
    num_classes: int


def _check_masks(where: str, size: int, targets: dict[str, Tensor], masks: dict[str, Tensor]):
    for task, target in targets.items():
        if target.dim() == 0 or target.shape[0] != size:
            raise DataError(
                f"{where}: targets of task {task!r} have shape {tuple(target.shape)}, expected "
                f"({size}, ...), one per input. Build them from the same samples."
            )
    for task, mask in masks.items():
        if task not in targets:
            raise DataError(
                f"{where}: a mask is given for task {task!r}, which has no targets; tasks: "
                f"{', '.join(targets)}."
            )
        if mask.dtype != torch.bool or mask.shape != (size,):
            raise DataError(
                f"{where}: the mask of task {task!r} must be a ({size},) bool tensor (True where "
                f"the label is present), got {mask.dtype} {tuple(mask.shape)}."
            )


@dataclass
class Split:
    """One split of a multi-task dataset, held in memory.

    Attributes:
        inputs: (N, ...) float32 inputs read by every task: images (N, C, H, W) or rows (N, D).
        targets: task name -> (N, ...) targets (int64 class indices for classification).
        masks: task name -> (N,) bool, True where that task's label is present. A task without
            a mask is labelled on every row; a row masked out of a task still trains the others.
    """

    inputs: Tensor
    targets: dict[str, Tensor]
    masks: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_masks("split", len(self.inputs), self.targets, self.masks)

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
        return Split(
            self.inputs,
            {task: self.targets[task] for task in tasks},
            {task: self.masks[task] for task in tasks if task in self.masks},
        )


@dataclass
class Batch:
    """One mini-batch: the inputs, and per task its targets and (optionally) its label mask.

    Attributes:
        inputs: (B, ...) inputs read by every task.
        targets: task name -> (B, ...) targets.
        masks: task name -> (B,) bool, True where the label is present (absent: all present).
    """

    inputs: Tensor
    targets: dict[str, Tensor]
    masks: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)

    def to(
        self,
        device: torch.device | str,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> Batch:
        """This batch on ``device``; 4-D inputs (images) in ``memory_format``."""
        inputs = self.inputs.to(device, non_blocking=True)
        if inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=memory_format)
        return Batch(
            inputs,
            {task: y.to(device, non_blocking=True) for task, y in self.targets.items()},
            {task: m.to(device, non_blocking=True) for task, m in self.masks.items()},
        )


@dataclass
class MultiTaskData:
    """A multi-task dataset ready for training.

    Attributes:
        name: the benchmark's name (e.g. ``"multi-mnist"``).
        protocol: how it was built (e.g. ``"sener"``, ``"pareto"``).
        tasks: its tasks, in the order of the targets.
        train: the training split.
        val: the validation split carved from train, or ``None``.
        test: the test split.
        fingerprint: sha256 identifying exactly this data.
    """

    name: str
    protocol: str
    tasks: list[TaskSpec]
    train: Split
    val: Split | None
    test: Split
    fingerprint: str

    def subset(self, tasks: Sequence[str]) -> MultiTaskData:
        """The same data restricted to ``tasks`` (in that order), nothing copied."""
        specs = {spec.name: spec for spec in self.tasks}
        return MultiTaskData(
            name=self.name,
            protocol=self.protocol,
            tasks=[specs[task] for task in tasks if task in specs],
            train=self.train.subset(tasks),
            val=None if self.val is None else self.val.subset(tasks),
            test=self.test.subset(tasks),
            fingerprint=self.fingerprint,
        )
