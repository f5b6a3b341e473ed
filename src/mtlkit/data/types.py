"""The containers data is delivered in: splits held in memory, their batches, the tasks' specs.

A dataset's inputs are either read by every task (one :class:`Split` per split: an image or a
table row, labelled for several tasks) or given per task (*multi-input*: a :data:`TaskSplits`
mapping each task to its own :class:`Split`, e.g. MNIST digits for one task and Fashion-MNIST items
for another, read by one shared trunk).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from mtlkit.data.errors import DataError

Label = str | int | float | bool
"""A class or label name as it appears in the data (JSON-representable)."""


@dataclass(frozen=True)
class TaskSpec:
    """One task of a dataset: its name (the key of its targets) and what its head and loss need.

    Attributes:
        name: the task's name.
        num_classes: the number of classes (``classification``; 2 for ``binary``), else ``None``.
        type: the task type, a name of :data:`mtlkit.tasks.TASK_TYPES`: ``classification``,
            ``binary``, ``multilabel`` or ``regression``.
        labels: the class names in class-index order (``classification``), the negative and the
            positive label (``binary``), or the L label names (``multilabel``); empty when the
            classes are just their indices (the built-in benchmarks) and for ``regression``.
        loss: the loss chosen for the task (``None``: its type's default).
        target_mean: ``regression``: the training targets' mean; the head learns
            ``(y - target_mean) / target_std`` and predictions are mapped back.
        target_std: ``regression``: the training targets' standard deviation (> 0).
    """

    name: str
    num_classes: int | None = None
    type: str = "classification"
    labels: tuple[Label, ...] = ()
    loss: str | None = None
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def num_labels(self) -> int:
        """The number of labels of a ``multilabel`` task (0 for other types)."""
        return len(self.labels) if self.type == "multilabel" else 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; :meth:`from_dict` reads them back."""
        return {**asdict(self), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TaskSpec:
        """The spec :meth:`to_dict` wrote."""
        return cls(**{**values, "labels": tuple(values.get("labels", ()))})


class Preprocessing(Protocol):
    """How raw inputs (a table's rows, image files) become a dataset's input tensors, fitted on
    the training split; saved with a run so that new data is prepared exactly the same way."""

    kind: str
    """What it reads: ``"table"`` or ``"images"``."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the inputs it makes."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description from which it can be rebuilt (never pickled)."""


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


def _check_weights(where: str, size: int, targets: dict[str, Tensor], weights: dict[str, Tensor]):
    for task, weight in weights.items():
        if task not in targets:
            raise DataError(
                f"{where}: weights are given for task {task!r}, which has no targets; tasks: "
                f"{', '.join(targets)}."
            )
        if not weight.is_floating_point() or weight.shape != (size,):
            raise DataError(
                f"{where}: the weights of task {task!r} must be a ({size},) float tensor, one "
                f"per row, got {weight.dtype} {tuple(weight.shape)}."
            )


@dataclass
class Split:
    """One split of a multi-task dataset, held in memory.

    Attributes:
        inputs: (N, ...) float32 inputs read by every task: images (N, C, H, W) or rows (N, D).
        targets: task name -> (N, ...) targets (int64 class indices for classification).
        masks: task name -> (N,) bool, True where that task's label is present. A task without
            a mask is labelled on every row; a row masked out of a task still trains the others.
        weights: task name -> (N,) float32 per-row loss weights (a table's weight column); a
            task without them weighs every row the same.
    """

    inputs: Tensor
    targets: dict[str, Tensor]
    masks: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_masks("split", len(self.inputs), self.targets, self.masks)
        _check_weights("split", len(self.inputs), self.targets, self.weights)

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
            {task: self.weights[task] for task in tasks if task in self.weights},
        )


TaskSplits = dict[str, Split]
"""One split of a multi-input dataset: task name -> that task's own inputs and targets (each
:class:`Split` holds the targets of its task only)."""

Inputs = Tensor | dict[str, Tensor]
"""A batch's inputs: one tensor read by every task, or task name -> that task's own inputs."""


@dataclass
class Batch:
    """One mini-batch: the inputs, and per task its targets and (optionally) its label mask.

    Attributes:
        inputs: (B, ...) inputs read by every task, or (multi-input) task name -> (Bₖ, ...) that
            task's own inputs, its targets and mask aligned with them.
        targets: task name -> (B, ...) targets (Bₖ rows for multi-input).
        masks: task name -> (B,) bool, True where the label is present (absent: all present).
        weights: task name -> (B,) per-row loss weights (absent: every row weighs the same).
    """

    inputs: Inputs
    targets: dict[str, Tensor]
    masks: dict[str, Tensor] = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        """The number of samples, over every task's inputs for multi-input batches."""
        if isinstance(self.inputs, Tensor):
            return len(self.inputs)
        return sum(len(x) for x in self.inputs.values())

    def to(
        self,
        device: torch.device | str,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> Batch:
        """This batch on ``device``; 4-D inputs (images) in ``memory_format``."""

        def move(inputs: Tensor) -> Tensor:
            inputs = inputs.to(device, non_blocking=True)
            if inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=memory_format)
            return inputs

        inputs = self.inputs
        return Batch(
            move(inputs)
            if isinstance(inputs, Tensor)
            else {task: move(x) for task, x in inputs.items()},
            {task: y.to(device, non_blocking=True) for task, y in self.targets.items()},
            {task: m.to(device, non_blocking=True) for task, m in self.masks.items()},
            {task: w.to(device, non_blocking=True) for task, w in self.weights.items()},
        )


def _subset(split: Split | TaskSplits, tasks: Sequence[str]) -> Split | TaskSplits:
    if isinstance(split, Split):
        return split.subset(tasks)
    return {task: split[task] for task in tasks}


@dataclass
class MultiTaskData:
    """A multi-task dataset ready for training.

    Attributes:
        name: the benchmark's name (e.g. ``"multi-mnist"``) or the table's file name.
        protocol: how it was built (e.g. ``"sener"``, ``"pareto"``, ``"table"``).
        tasks: its tasks, in the order of the targets.
        train: the training split: one :class:`Split` read by every task, or (multi-input)
            one :class:`Split` per task.
        val: the validation split (same kind as ``train``), or ``None``.
        test: the test split (same kind as ``train``).
        fingerprint: sha256 identifying exactly this data.
        preprocessing: how raw inputs became these tensors, fitted on train (saved with a run,
            so that ``mtlkit predict`` prepares new data the same way); ``None`` if unknown.
    """

    name: str
    protocol: str
    tasks: list[TaskSpec]
    train: Split | TaskSplits
    val: Split | TaskSplits | None
    test: Split | TaskSplits
    fingerprint: str
    preprocessing: Preprocessing | None = None

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.tasks]
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if split is None or isinstance(split, Split):
                continue
            if list(split) != names:
                raise DataError(
                    f"{self.name}: the per-task {split_name} splits are for tasks "
                    f"{list(split)}, but the tasks are {names}; give one split per task."
                )
            shapes = {task: tuple(part.inputs.shape[1:]) for task, part in split.items()}
            if len(set(shapes.values())) > 1:
                raise DataError(
                    f"{self.name}: one shared trunk reads every task's inputs, so they need one "
                    f"per-sample shape; the {split_name} inputs have {shapes}."
                )

    @property
    def multi_input(self) -> bool:
        """Whether every task has its own inputs (one :class:`Split` per task)."""
        return not isinstance(self.train, Split)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the inputs, e.g. ``(1, 28, 28)`` or ``(D,)``."""
        split = self.train if isinstance(self.train, Split) else next(iter(self.train.values()))
        return tuple(split.inputs.shape[1:])

    def subset(self, tasks: Sequence[str]) -> MultiTaskData:
        """The same data restricted to ``tasks`` (in that order), nothing copied."""
        specs = {spec.name: spec for spec in self.tasks}
        unknown = [task for task in tasks if task not in specs]
        if unknown:
            raise DataError(
                f"{self.name}: unknown task(s) {', '.join(map(repr, unknown))}. Choose among: "
                f"{', '.join(specs)}."
            )
        return MultiTaskData(
            name=self.name,
            protocol=self.protocol,
            tasks=[specs[task] for task in tasks],
            train=_subset(self.train, tasks),
            val=None if self.val is None else _subset(self.val, tasks),
            test=_subset(self.test, tasks),
            fingerprint=self.fingerprint,
            preprocessing=self.preprocessing,
        )
