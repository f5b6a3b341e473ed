"""Which rows of a table are for training, validation and test.

Either by seeded random fractions (``val_fraction``, ``test_fraction``), or by a column whose
values say ``train``, ``val`` (or ``validation``) and ``test`` for each row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtlkit.data.errors import InputError
from mtlkit.data.tables.origin import Origin

SPLIT_NAMES = ("train", "val", "test")
_ALIASES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
_SPLIT_STREAM = 7
"""Separates the split's random stream from the other draws of the same seed."""

Rows = dict[str, np.ndarray]
"""Split name -> the sorted row positions in it (``val`` may be absent)."""


def split_rows(
    frame: pd.DataFrame,
    origin: Origin,
    *,
    val_fraction: float,
    test_fraction: float,
    split_column: str | None,
    seed: int,
    stream: int = 0,
) -> Rows:
    """The rows of each split.

    Args:
        frame: the table.
        origin: where it came from, for messages.
        val_fraction: the share of rows drawn for validation (0: none), without ``split_column``.
        test_fraction: the share of rows drawn for test, without ``split_column``.
        split_column: a column naming each row's split, instead of fractions.
        seed: seeds the draw; the same seed and table give the same splits.
        stream: tells the draws of several tables with one seed apart (multi-input).

    Raises:
        InputError: a split without rows, or a split column with another value or a gap.
    """
    if split_column is not None:
        rows = _by_column(frame, origin, split_column)
    else:
        rows = _by_fractions(len(frame), val_fraction, test_fraction, seed, stream)
        empty = [name for name in SPLIT_NAMES if name in rows and not rows[name].size]
        if empty:
            fix = {"train": "smaller fractions", "val": "a larger val_fraction"}.get(
                empty[0], "a larger test_fraction"
            )
            raise InputError(
                f"{origin.name}: {len(frame)} rows split by val_fraction={val_fraction} and "
                f"test_fraction={test_fraction} leave the {empty[0]} split empty; use a larger "
                f"table or {fix}."
            )
    return rows


def _by_fractions(size: int, val_fraction: float, test_fraction: float, seed: int, stream: int):
    order = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_STREAM, stream]))
    order = order.permutation(size)
    test_size = round(size * test_fraction)
    val_size = round(size * val_fraction)
    rows = {
        "test": np.sort(order[:test_size]),
        "train": np.sort(order[test_size + val_size :]),
    }
    if val_fraction > 0:
        rows["val"] = np.sort(order[test_size : test_size + val_size])
    return rows


def _by_column(frame: pd.DataFrame, origin: Origin, column: str) -> Rows:
    if column not in frame.columns:
        raise InputError(
            f"{origin.name}: no split column {column!r}; the table has columns "
            f"{', '.join(frame.columns)}."
        )
    series = frame[column]
    names = series.astype(str).str.strip().str.lower().map(_ALIASES)
    bad = names.isna().to_numpy() | series.isna().to_numpy()
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{origin.at(column, position)}: {series.iloc[position]!r} is not a split; write "
            "train, val or test in every row."
        )
    rows = {name: np.flatnonzero((names == name).to_numpy()) for name in SPLIT_NAMES}
    for name in ("train", "test"):
        if not rows[name].size:
            raise InputError(
                f"{origin.at(column)}: no row is marked {name!r}; mark some rows for training "
                "and some for test."
            )
    if not rows["val"].size:
        del rows["val"]
    return rows
