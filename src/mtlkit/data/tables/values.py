"""Reading a column's values: numbers (with the first bad row named) and class keys.

Class labels and categories are matched by *key*: a canonical string, so that the same value
read from different files matches whatever dtype pandas inferred there. Numbers (and strings that
are numbers) have one key per value (``1``, ``1.0`` and ``"1"`` are all ``"1"``); booleans are
``"true"``/``"false"``; other strings are themselves.

Everything is computed once per distinct value (``pandas.factorize``), then gathered for the
rows, so that a column of a million rows with a few distinct values is read in milliseconds.
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
    if pd.api.types.is_numeric_dtype(series):
        numbers = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return numbers, ~np.isnan(numbers) & ~np.isfinite(numbers)
    codes, uniques = pd.factorize(series)
    parsed = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce")
    per_unique = np.append(parsed.to_numpy(dtype=np.float64, na_value=np.nan), np.nan)
    numbers = per_unique[codes]  # code -1 (missing) reads the appended NaN
    return numbers, (codes >= 0) & ~np.isfinite(numbers)


def numbers_or_error(series: pd.Series, origin: Origin, what: str, fix: str) -> np.ndarray:
    """float64 values of ``series`` (NaN where missing), or an :class:`InputError` naming the
    first row whose value is not a finite number; ``what`` says what the column is, ``fix`` how to
    repair it."""
    numbers, bad = as_numbers(series)
    if bad.any():
        where, value = origin.first(series, bad)
        finite = "finite " if isinstance(value, float) else ""
        raise InputError(f"{where}: {value!r} is not a {finite}number, but {what}; {fix}")
    return numbers


def count_non_numbers(series: pd.Series) -> int:
    """How many present values of ``series`` are not finite numbers (booleans are numbers)."""
    return int(as_numbers(series)[1].sum())


def _keyed(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """``(codes, keys)``: each row's index into ``keys`` (-1 where missing), and the key of each
    distinct value (two values may share a key, e.g. ``1`` and ``"1"``)."""
    codes, uniques = pd.factorize(series)
    return codes, [label_key(value) for value in uniques]


def unique_keys(series: pd.Series) -> set[str]:
    """The keys of the values present in ``series``."""
    return set(_keyed(series)[1])


def category_codes(series: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """The index in ``categories`` of each row's key (int64), -1 where the value is missing or
    its key is not among ``categories``."""
    codes, found = _keyed(series)
    index = {key: i for i, key in enumerate(categories)}
    per_unique = np.array([index.get(key, -1) for key in found] + [-1], dtype=np.int64)
    return per_unique[codes]


def label_key(label: object) -> str:
    """The key of one value, as read from a table or given in a config (``1`` -> ``"1"``)."""
    if isinstance(label, (bool, np.bool_)):
        return "true" if label else "false"
    if isinstance(label, (int, float, np.integer, np.floating)) and math.isfinite(label):
        return _number_key(float(label))
    text = str(label)
    try:
        number = float(text)
    except ValueError:
        return text
    return _number_key(number) if math.isfinite(number) else text


def _number_key(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def display(key: str, numeric: bool) -> Label:
    """The label to show for ``key``: a number when the column holds numbers, else the key."""
    if not numeric:
        return key
    value = float(key)
    return int(value) if value.is_integer() else value
