"""Reading a column's values: numbers (with the first bad row named) and class keys.

Class labels and categories are matched by *key*: a canonical string, so that the same value
read from different files matches whatever dtype pandas inferred there. Numbers (and strings that
are numbers) have one key per value (``1``, ``1.0`` and ``"1"`` are all ``"1"``); booleans are
``"true"``/``"false"``; other strings are themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mtlkit.data.errors import InputError
from mtlkit.data.tables.origin import Origin
from mtlkit.data.types import Label


def missing(series: pd.Series) -> np.ndarray:
    """(N,) bool: where ``series`` holds no value (an empty cell, NaN, None)."""
    return series.isna().to_numpy()


def as_numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(values, bad)``: float64 values (NaN where missing or not a number) and (N,) bool, True
    where a value is present but is not a finite number."""
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64), np.zeros(len(series), dtype=bool)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~missing(series) & ~np.isfinite(numbers)
    return numbers, bad


def numbers_or_error(series: pd.Series, origin: Origin, what: str, fix: str) -> np.ndarray:
    """float64 values of ``series`` (NaN where missing), or an :class:`InputError` naming the
    first row whose value is not a finite number; ``what`` says what the column is, ``fix`` how to
    repair it."""
    numbers, bad = as_numbers(series)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        value = series.iloc[position]
        raise InputError(
            f"{origin.at(series.name, int(series.index[position]))}: {value!r} is not a "
            f"{'finite ' if isinstance(value, float) else ''}number, but {what}; {fix}"
        )
    return numbers


def keys(series: pd.Series) -> np.ndarray:
    """The canonical key (a str) of every value, ``None`` where it is missing (object array)."""
    out = np.full(len(series), None, dtype=object)
    present = ~missing(series)
    if pd.api.types.is_bool_dtype(series):
        out[present] = np.where(series.to_numpy()[present].astype(bool), "true", "false")
        return out
    numbers, _ = as_numbers(series)
    numeric = present & np.isfinite(numbers)
    values = numbers[numeric]
    if np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53):
        out[numeric] = values.astype(np.int64).astype(str)
    else:
        out[numeric] = [_number_key(value) for value in values]
    text = present & ~numeric
    out[text] = series[text].astype(str).to_numpy()
    return out


def _number_key(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def display(key: str, numeric: bool) -> Label:
    """The label to show for ``key``: a number when the column holds numbers, else the key."""
    if not numeric:
        return key
    value = float(key)
    return int(value) if value.is_integer() else value


def label_key(label: Label) -> str:
    """The key of one label as given in a config or read back from a run (``1`` -> ``"1"``)."""
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, (int, float)) and math.isfinite(label):
        return _number_key(float(label))
    text = str(label)
    try:
        number = float(text)
    except ValueError:
        return text
    return _number_key(number) if math.isfinite(number) else text


def count_non_numbers(series: pd.Series) -> int:
    """How many present values of ``series`` are not finite numbers (booleans are numbers)."""
    return int(as_numbers(series)[1].sum())


def codes(found: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """The index of each key of ``found`` in ``categories`` (int64), -1 where the key is missing
    (``None``) or not among them."""
    return pd.Index(list(categories), dtype=object).get_indexer(found).astype(np.int64)
