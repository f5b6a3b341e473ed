"""A user's table(s) as a :class:`~mtlkit.data.MultiTaskData`: read, checked, split, encoded.

:func:`load_table` reads one table whose rows are labelled for several tasks (some cells may be
empty), or one table per task (*multi-input*: each task trains on its own rows, all through one
shared trunk). The preprocessing is fitted on the training rows only and travels with the data
(``data.preprocessing``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from mtlkit.data.errors import InputError
from mtlkit.data.notes import note
from mtlkit.data.tables.features import MAX_CATEGORIES, FeatureEncoder
from mtlkit.data.tables.origin import Origin
from mtlkit.data.tables.preprocessing import TablePreprocessing
from mtlkit.data.tables.read import TableSource, read_table
from mtlkit.data.tables.splits import Rows, split_rows
from mtlkit.data.tables.targets import TableTask, fit_target
from mtlkit.data.types import MultiTaskData, Split

Features = Sequence[str] | Literal["all"]
"""The feature columns, or ``"all"``: every column that no task (and no split column) uses."""


def load_table(
    table: TableSource | None,
    tasks: Sequence[TableTask],
    *,
    features: Features = "all",
    categorical: Sequence[str] = (),
    exclude: Sequence[str] = (),
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_column: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    max_categories: int = MAX_CATEGORIES,
    quiet: bool = False,
) -> MultiTaskData:
    """A table whose rows are labelled for several tasks (or one table per task), split and
    encoded, with everything fitted on the training rows.

    Args:
        table: a ``.csv``, ``.parquet`` or ``.npz`` file, a DataFrame, or a mapping of column
            names to NumPy arrays (a 2-D array ``x`` is the columns ``x_0 … x_{k-1}``). ``None``
            when every task has its own table (``task.table``): *multi-input* data, each task's
            table split on its own (with its own random stream), all encoded by one feature
            encoder fitted on every task's training rows.
        tasks: the tasks and their label columns; a row whose label cell is empty is masked
            out of that task only.
        features: the feature columns, or ``"all"``: every column that no task uses (that every
            task's table holds, with a table per task).
        categorical: feature columns to one-hot encode even though they hold numbers.
        exclude: further columns to leave out of ``"all"``.
        val_fraction: the share of rows drawn for validation (0: no validation split).
        test_fraction: the share of rows drawn for test.
        split_column: a column naming each row's split (``train``/``val``/``test``) instead.
        seed: seeds the split.
        limit: keep only the first ``limit`` rows of each split.
        max_categories: the most categories a categorical feature may have.
        quiet: print no notes.

    Raises:
        InputError: anything wrong with a table, named by file, column and row.
    """
    per_task = table is None
    _check_tasks(tasks, per_task_tables=per_task)
    sources = _read_each(tasks) if per_task else [read_table(table)]
    groups = (
        {i: [t.name] for i, t in enumerate(tasks)} if per_task else {0: [t.name for t in tasks]}
    )
    owner = {name: i for i, names in groups.items() for name in names}
    used = _label_columns(tasks, exclude, split_column)
    columns = _feature_columns(features, sources, used, quiet)
    rows = [
        _limited(
            split_rows(
                frame,
                origin,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                split_column=split_column,
                seed=seed,
                stream=number,
            ),
            limit,
        )
        for number, (frame, origin) in enumerate(sources)
    ]
    if len({"val" in r for r in rows}) > 1:
        raise InputError(
            f"{split_column!r}: some tasks' tables mark validation rows and others do not; mark "
            "val rows in every task's table or in none."
        )
    train = [(frame.iloc[r["train"]], origin) for (frame, origin), r in zip(sources, rows)]
    preprocessing = TablePreprocessing(
        FeatureEncoder.fit(
            train, columns, categorical=categorical, max_categories=max_categories, quiet=quiet
        ),
        {task.name: fit_target(task, *train[owner[task.name]]) for task in tasks},
        list(dict.fromkeys(column for frame, _ in sources for column in frame.columns)),
    )
    splits: dict[str, dict[int, Split]] = {}
    for number, names in groups.items():
        frame, origin = sources[number]
        for split, index in rows[number].items():
            part = preprocessing.split(
                frame.iloc[index], origin, f"the {split} rows", names, quiet=quiet
            )
            part.weights.update(_row_weights(frame.iloc[index], tasks, part, origin))
            _check_labelled(part, split, origin)
            splits.setdefault(split, {})[number] = part
    shaped = {
        split: {groups[i][0]: part for i, part in parts.items()} if per_task else parts[0]
        for split, parts in splits.items()
    }
    return MultiTaskData(
        name="+".join(dict.fromkeys(_name(origin) for _, origin in sources)),
        protocol="tables" if per_task else "table",
        tasks=[preprocessing.targets[task.name].spec(task) for task in tasks],
        train=shaped["train"],
        val=shaped.get("val"),
        test=shaped["test"],
        fingerprint=_fingerprint(
            [(frame, r) for (frame, _), r in zip(sources, rows)], preprocessing
        ),
        preprocessing=preprocessing,
    )


def _check_tasks(tasks: Sequence[TableTask], *, per_task_tables: bool) -> None:
    if not tasks:
        raise InputError("no task is declared; declare at least one task and its column.")
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise InputError(f"tasks {names}: every task needs its own name.")
    for task in tasks:
        if (task.table is None) == per_task_tables:
            where = "its own table" if per_task_tables else "no table of its own"
            raise InputError(
                f"task {task.name!r}: with {'per-task tables' if per_task_tables else 'one table'}"
                f", every task has {where}."
            )


def _read_each(tasks: Sequence[TableTask]) -> list[tuple[pd.DataFrame, Origin]]:
    """Each task's table, a file that several tasks share read once."""
    cache: dict[object, tuple[pd.DataFrame, Origin]] = {}
    tables = []
    for task in tasks:
        is_path = isinstance(task.table, (str, os.PathLike))
        key = str(Path(task.table).absolute()) if is_path else id(task.table)
        if key not in cache:
            cache[key] = read_table(task.table)
        tables.append(cache[key])
    return tables


def _label_columns(
    tasks: Sequence[TableTask], exclude: Sequence[str], split_column: str | None
) -> list[str]:
    columns = [column for task in tasks for column in task.label_columns]
    weights = [task.weight_column for task in tasks if task.weight_column is not None]
    return [*columns, *weights, *exclude, *([split_column] if split_column else [])]


def _row_weights(
    frame: pd.DataFrame, tasks: Sequence[TableTask], part: Split, origin: Origin
) -> dict[str, torch.Tensor]:
    """The per-row loss weights of the tasks of ``part`` that read a weight column: numbers
    ≥ 0 on every labelled row (an unlabelled row's cell is not read)."""
    weights = {}
    for task in tasks:
        column = task.weight_column
        if column is None or task.name not in part.targets:
            continue
        origin.require(
            frame, [column], "weight column", f"tasks.{task.name}.weight_column names it."
        )
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        mask = part.masks.get(task.name)
        labelled = np.ones(len(values), bool) if mask is None else mask.numpy()
        bad = labelled & ~(np.isfinite(values) & (values >= 0))
        if bad.any():
            where, value = origin.first(frame[column], bad)
            raise InputError(
                f"{where}: the weight {value} is not a number ≥ 0; give every labelled row a "
                "weight (0 leaves it out of the loss)."
            )
        weights[task.name] = torch.from_numpy(np.where(labelled, values, 0.0)).float()
    return weights


def _feature_columns(
    features: Features,
    tables: Sequence[tuple[pd.DataFrame, Origin]],
    used: Sequence[str],
    quiet: bool,
) -> list[str]:
    if features == "all":
        everywhere = [
            column
            for column in tables[0][0].columns
            if all(column in frame.columns for frame, _ in tables)
        ]
        columns = [column for column in everywhere if column not in used]
        elsewhere = {c for frame, _ in tables for c in frame.columns} - set(everywhere) - set(used)
        if elsewhere:
            note(
                f"features: column(s) {', '.join(sorted(elsewhere))} are not in every task's "
                "table and are left out.",
                quiet=quiet,
            )
        if not columns:
            raise InputError(
                f"{tables[0][1].name}: no column is left for features once the task and split "
                "columns are taken; add feature columns to the table."
            )
        return columns
    clash = [column for column in features if column in used]
    if clash:
        raise InputError(
            f"features: column(s) {', '.join(map(repr, clash))} hold labels or the split; a "
            "feature must not give the answer away. Remove them from data.features."
        )
    for frame, origin in tables:
        hint = f"the table has columns {', '.join(frame.columns)}."
        origin.require(frame, features, "feature column(s)", hint)
    return list(features)


def _limited(rows: Rows, limit: int | None) -> Rows:
    return rows if limit is None else {split: index[:limit] for split, index in rows.items()}


def _check_labelled(split: Split, name: str, origin: Origin) -> None:
    for task, mask in split.masks.items():
        if not bool(mask.any()):
            raise InputError(
                f"{origin.name}: task {task!r} has no labelled row in the {name} split; every "
                "split needs labels of every task (add rows, or change the split)."
            )


def _name(origin: Origin) -> str:
    path = Path(origin.name)
    return path.stem if path.suffix else origin.name


def _fingerprint(
    tables: Sequence[tuple[pd.DataFrame, Rows]], preprocessing: TablePreprocessing
) -> str:
    """sha256 of the tables' contents, the rows of every split and the fitted preprocessing."""
    digest = hashlib.sha256()
    for frame, rows in tables:
        digest.update(json.dumps(list(frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        for split in sorted(rows):
            digest.update(split.encode())
            digest.update(np.ascontiguousarray(rows[split], dtype=np.int64).tobytes())
    digest.update(json.dumps(preprocessing.to_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()
