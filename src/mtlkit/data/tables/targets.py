"""Task columns to targets and label masks, one encoder per task type, fitted on training rows.

An empty cell (or NaN) in a task's column masks the row out of that task: its target is 0 and
its mask False, and the row still trains the tasks it has labels for.

* ``classification``: one column of class labels (strings or numbers); the classes are those of
  the training rows, sorted; targets are int64 class indices.
* ``binary``: one column of two labels, 0/1, true/false or yes/no (the positive one is 1, true,
  yes), or any two labels with the positive one named; targets are float32 0/1.
* ``multilabel``: L columns of 0/1 (or true/false), one per label; a row is labelled when all
  its L cells are; targets are (N, L) float32.
* ``regression``: one numeric column; targets are float32 values, and the training rows' mean
  and standard deviation are kept so that the head can learn standardised targets.

A label in validation or test rows that the training rows do not have is an error (the model
could never predict it), as is a value that does not fit the type; each names its row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from mtlkit.data.errors import InputError
from mtlkit.data.tables.origin import Origin
from mtlkit.data.tables.read import TableSource
from mtlkit.data.tables.values import (
    category_codes,
    display,
    label_key,
    missing,
    numbers_or_error,
    unique_keys,
)
from mtlkit.data.types import Label, TaskSpec
from mtlkit.registry import Registry


@dataclass(frozen=True)
class TableTask:
    """A task read from a table: its name, type and the column(s) holding its labels.

    Attributes:
        name: the task's name.
        type: ``classification``, ``binary``, ``multilabel`` or ``regression``.
        column: the label column (every type but ``multilabel``).
        columns: ``multilabel``: one 0/1 column per label.
        positive: ``binary``: the positive label, when the column's two labels are not 0/1,
            true/false or yes/no.
        loss: the loss to train the task with (``None``: its type's default).
        table: the task's own table (multi-input), else ``None``: the dataset's table.
        weight_column: a column of per-row loss weights (numbers ≥ 0), else ``None``.
    """

    name: str
    type: str
    column: str | None = None
    columns: tuple[str, ...] = ()
    positive: Label | None = None
    loss: str | None = None
    table: TableSource | None = None
    weight_column: str | None = None

    @property
    def label_columns(self) -> tuple[str, ...]:
        """The columns this task reads its labels from."""
        return self.columns if self.type == "multilabel" else (self.column,)


Encoded = tuple[torch.Tensor, torch.Tensor]
"""A task's targets and its (N,) bool label mask."""


class TargetEncoder(ABC):
    """Base of the per-type encoders: fitted on training rows, applied to any rows."""

    type: ClassVar[str]
    task: str

    @property
    @abstractmethod
    def label_columns(self) -> tuple[str, ...]:
        """The columns the labels are read from."""

    def transform(self, frame: pd.DataFrame, origin: Origin, rows: str) -> Encoded:
        """Targets and mask of ``frame``'s rows; ``rows`` names them in messages ("the test
        rows").

        Raises:
            InputError: a label column is missing, or a value does not fit the task.
        """
        _check_columns(frame, self.label_columns, origin, self.task)
        return self._encode(frame, origin, rows)

    @abstractmethod
    def _encode(self, frame: pd.DataFrame, origin: Origin, rows: str) -> Encoded:
        """Targets and mask of ``frame``'s rows, whose label columns are all there."""

    @abstractmethod
    def spec(self, task: TableTask) -> TaskSpec:
        """What the task's head and loss need to know."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, with the type."""
        return {"type": self.type, **asdict(self)}


@dataclass
class _ColumnTarget(TargetEncoder, ABC):
    """An encoder of one label column."""

    task: str
    column: str

    @property
    def label_columns(self) -> tuple[str, ...]:
        return (self.column,)


TARGETS: Registry[type] = Registry("task type")
"""Task type -> its encoder class (``fit(task, frame, origin)``, ``from_dict(values)``)."""


def _check_columns(frame: pd.DataFrame, columns: tuple[str, ...], origin: Origin, task: str):
    hint = f"the table has columns {', '.join(frame.columns)}."
    origin.require(frame, columns, f"label column(s) of task {task!r}:", hint)


def _unknown_label(
    first: tuple[str, object], known: list[Label], rows: str, task: str
) -> InputError:
    """The error for a label that training never saw; ``first``: where it is, and its value."""
    where, value = first
    return InputError(
        f"{where}: label {value!r} of task {task!r} is in {rows} but never in the training rows "
        f"(which have {', '.join(map(repr, known))}), so the model cannot learn it; add training "
        "rows with it, change the split, or leave the cell empty."
    )


@TARGETS.register("classification")
@dataclass
class ClassificationTarget(_ColumnTarget):
    """Class labels to class indices (classes sorted by key)."""

    classes: list[str]
    labels: list[Label]
    type: ClassVar[str] = "classification"

    @classmethod
    def fit(cls, task: TableTask, frame: pd.DataFrame, origin: Origin) -> ClassificationTarget:
        """The classes of the training rows ``frame`` (at least two)."""
        series = frame[task.column]
        found = sorted(unique_keys(series))
        if len(found) < 2:
            raise InputError(
                f"{origin.at(task.column)}: task {task.name!r} needs at least two classes in the "
                f"training rows, found {found or 'none'}."
            )
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        if numeric:
            found.sort(key=float)
        return cls(task.name, task.column, found, [display(key, numeric) for key in found])

    def _encode(self, frame: pd.DataFrame, origin: Origin, rows: str) -> Encoded:
        series = frame[self.column]
        index = category_codes(series, self.classes)
        mask = ~missing(series)
        if (index[mask] < 0).any():
            raise _unknown_label(
                origin.first(series, mask & (index < 0)), self.labels, rows, self.task
            )
        return torch.from_numpy(np.where(mask, index, 0)), torch.from_numpy(mask)

    def spec(self, task: TableTask) -> TaskSpec:
        return TaskSpec(
            task.name, len(self.classes), "classification", tuple(self.labels), task.loss
        )


_POSITIVE_KEYS = ("1", "true", "yes")
_NEGATIVE_KEYS = ("0", "false", "no")
_BINARY_KEYS = (*_NEGATIVE_KEYS, *_POSITIVE_KEYS)
"""The keys of a 0/1 column, negatives first."""


@TARGETS.register("binary")
@dataclass
class BinaryTarget(_ColumnTarget):
    """Two labels to 0 (negative) and 1 (positive)."""

    negative: str
    positive: str
    labels: list[Label] = field(default_factory=list)
    type: ClassVar[str] = "binary"

    @classmethod
    def fit(cls, task: TableTask, frame: pd.DataFrame, origin: Origin) -> BinaryTarget:
        """The two labels of the training rows ``frame``, and which one is positive."""
        series = frame[task.column]
        found = sorted(unique_keys(series), key=str.lower)
        if len(found) != 2:
            raise InputError(
                f"{origin.at(task.column)}: binary task {task.name!r} needs exactly two labels "
                f"in the training rows, found {len(found)}: {found[:5]}; use type "
                "classification for more."
            )
        if task.positive is not None:
            positive = label_key(task.positive)
            if positive not in found:
                raise InputError(
                    f"{origin.at(task.column)}: the positive label {task.positive!r} of task "
                    f"{task.name!r} is not one of the column's labels {found}."
                )
        else:
            named = [key for key in found if key.lower() in _POSITIVE_KEYS]
            others = {key.lower() for key in found} - set(_POSITIVE_KEYS)
            if len(named) != 1 or not others <= set(_NEGATIVE_KEYS):
                raise InputError(
                    f"{origin.at(task.column)}: which of the labels {found} of task "
                    f"{task.name!r} is positive? Name it: tasks.{task.name}.positive."
                )
            positive = named[0]
        negative = found[1 - found.index(positive)]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        bools = pd.api.types.is_bool_dtype(series)
        labels = [
            (key == "true") if bools else display(key, numeric) for key in (negative, positive)
        ]
        return cls(task.name, task.column, negative, positive, labels)

    def _encode(self, frame: pd.DataFrame, origin: Origin, rows: str) -> Encoded:
        series = frame[self.column]
        index = category_codes(series, [self.negative, self.positive])
        mask = ~missing(series)
        unknown = mask & (index < 0)
        if unknown.any():
            raise _unknown_label(origin.first(series, unknown), self.labels, rows, self.task)
        target = (index == 1).astype(np.float32)
        return torch.from_numpy(target), torch.from_numpy(mask)

    def spec(self, task: TableTask) -> TaskSpec:
        return TaskSpec(task.name, 2, "binary", tuple(self.labels), task.loss)


@TARGETS.register("multilabel")
@dataclass
class MultilabelTarget(TargetEncoder):
    """L columns of 0/1 to an (N, L) float32 matrix; a row is labelled when all L cells are."""

    task: str
    columns: list[str]
    type: ClassVar[str] = "multilabel"

    @property
    def label_columns(self) -> tuple[str, ...]:
        return tuple(self.columns)

    @classmethod
    def fit(cls, task: TableTask, frame: pd.DataFrame, origin: Origin) -> MultilabelTarget:
        """Nothing to learn but the columns; their values are checked."""
        encoder = cls(task.name, list(task.columns))
        encoder._encode(frame, origin, "the training rows")
        return encoder

    def _encode(self, frame: pd.DataFrame, origin: Origin, rows: str) -> Encoded:
        target = np.zeros((len(frame), len(self.columns)), dtype=np.float32)
        mask = np.ones(len(frame), dtype=bool)
        for j, column in enumerate(self.columns):
            series = frame[column]
            index = category_codes(series, _BINARY_KEYS)
            present = ~missing(series)
            bad = present & (index < 0)
            if bad.any():
                where, value = origin.first(series, bad)
                raise InputError(
                    f"{where}: {value!r} is no 0/1 label of multilabel task {self.task!r}; write "
                    "1 (or true) where the label applies, 0 (or false) where it does not, and "
                    "leave the cell empty where unknown."
                )
            target[:, j] = index >= len(_NEGATIVE_KEYS)
            mask &= present
        return torch.from_numpy(target * mask[:, None]), torch.from_numpy(mask)

    def spec(self, task: TableTask) -> TaskSpec:
        return TaskSpec(task.name, None, "multilabel", tuple(self.columns), task.loss)


@TARGETS.register("regression")
@dataclass
class RegressionTarget(_ColumnTarget):
    """A numeric column; the training rows' mean and standard deviation are kept."""

    mean: float
    std: float
    type: ClassVar[str] = "regression"

    @classmethod
    def fit(cls, task: TableTask, frame: pd.DataFrame, origin: Origin) -> RegressionTarget:
        """Mean and standard deviation of the training rows' targets."""
        values = _regression_values(frame[task.column], origin, task.name)
        present = values[~np.isnan(values)]
        std = float(present.std()) if present.size else 1.0
        mean = float(present.mean()) if present.size else 0.0
        return cls(task.name, task.column, mean, std if std > 0 else 1.0)

    def _encode(self, frame: pd.DataFrame, origin: Origin, rows: str) -> Encoded:
        values = _regression_values(frame[self.column], origin, self.task)
        mask = ~np.isnan(values)
        return (
            torch.from_numpy(np.nan_to_num(values, nan=0.0).astype(np.float32)),
            torch.from_numpy(mask),
        )

    def spec(self, task: TableTask) -> TaskSpec:
        return TaskSpec(
            task.name, None, "regression", (), task.loss, target_mean=self.mean, target_std=self.std
        )


def _regression_values(series: pd.Series, origin: Origin, task: str) -> np.ndarray:
    return numbers_or_error(
        series,
        origin,
        f"task {task!r} is a regression on this column",
        "correct it, or leave the cell empty where the value is unknown.",
    )


def fit_target(task: TableTask, frame: pd.DataFrame, origin: Origin) -> TargetEncoder:
    """The encoder of ``task``'s type fitted on the training rows ``frame``."""
    _check_columns(frame, task.label_columns, origin, task.name)
    return TARGETS.get(task.type).fit(task, frame, origin)


def target_from_dict(values: Mapping[str, Any]) -> TargetEncoder:
    """The encoder that :meth:`TargetEncoder.to_dict` described."""
    values = dict(values)
    return TARGETS.get(values.pop("type"))(**values)
