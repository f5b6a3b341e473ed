"""Reading a table: a CSV, Parquet or ``.npz`` file, a pandas DataFrame or a mapping of arrays.

Every source becomes a :class:`pandas.DataFrame` with string column names and a fresh
``RangeIndex``: a row's index is its 0-based position in the source, which is what messages name.
Empty cells (also blank strings, and in CSV files pandas' other missing markers: ``NA``, ``NaN``,
``null``, …) are missing values.

``.npz`` files and mappings hold one array per column: a 1-D array is one column, a 2-D array
``x`` of shape (N, k) is the k columns ``x_0 … x_{k-1}``. String arrays must be NumPy unicode
arrays (``dtype=str``): ``.npz`` files are read without pickle.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlkit.data.errors import InputError
from mtlkit.data.tables.origin import Origin

TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".npz")
"""The file types :func:`read_table` reads."""

TableSource = str | os.PathLike[str] | pd.DataFrame | Mapping[str, Any]
"""A table: a file's path, a DataFrame, or a mapping of column names to arrays."""


def read_table(source: TableSource) -> tuple[pd.DataFrame, Origin]:
    """The table ``source`` as a DataFrame, with the :class:`Origin` that messages name.

    Raises:
        InputError: a missing or unreadable file, an unknown file type, arrays that do not make
            a table, or a table without rows.
    """
    if isinstance(source, pd.DataFrame):
        frame, origin = source, Origin("the DataFrame")
    elif isinstance(source, Mapping):
        origin = Origin("the arrays")
        frame = _from_arrays(dict(source), origin)
    else:
        path = Path(source)
        origin = Origin(str(path), csv=path.suffix.lower() == ".csv")
        frame = _read_file(path, origin)
    if len(frame) == 0:
        raise InputError(f"{origin.name}: the table has no rows; give a table with data.")
    frame = _blanks_missing(frame.reset_index(drop=True))
    frame.columns = [str(column) for column in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise InputError(
            f"{origin.name}: column(s) {', '.join(map(repr, duplicated))} appear more than once; "
            "give every column its own name."
        )
    return frame, origin


def _blanks_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with blank strings (``""``, spaces) in text columns as missing values."""
    text = [
        column
        for column in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[column])
        and not pd.api.types.is_bool_dtype(frame[column])
    ]
    if not text:
        return frame
    frame = frame.copy()
    for column in text:
        series = frame[column]
        try:
            blank = series.str.strip().eq("")
        except AttributeError:  # no text in the column at all (e.g. dates)
            continue
        blank = blank.fillna(False).to_numpy(dtype=bool)
        if blank.any():
            frame[column] = series.where(~blank, None)
    return frame


def _read_file(path: Path, origin: Origin) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(
            f"{path}: unknown table type {suffix or '(no suffix)'!r}; use a .csv, .parquet or "
            ".npz file."
        )
    if not path.is_file():
        raise InputError(
            f"{path} does not exist; check the path (relative paths in a config file are read "
            "from the config file's folder)."
        )
    try:
        if suffix == ".csv":
            return pd.read_csv(path, low_memory=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        with np.load(path, allow_pickle=False) as arrays:
            return _from_arrays({key: arrays[key] for key in arrays.files}, origin)
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, pd.errors.ParserError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "pickle" in message.lower():
            message += "; save strings as unicode arrays, e.g. np.array(values, dtype=str)"
        raise InputError(f"{path} is not a readable {suffix[1:]} table: {message}.") from None


def _from_arrays(arrays: dict[str, Any], origin: Origin) -> pd.DataFrame:
    columns: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.ndim == 1:
            columns[name] = array
        elif array.ndim == 2:
            columns.update({f"{name}_{j}": array[:, j] for j in range(array.shape[1])})
        else:
            raise InputError(
                f"{origin.at(name)}: an array of shape {array.shape}; give 1-D columns or 2-D "
                "(N, k) arrays (read as k columns)."
            )
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(
            f"{origin.name}: the columns have different lengths {lengths}; give one value per "
            "row in every column."
        )
    if not columns:
        raise InputError(f"{origin.name}: no arrays; give at least one column.")
    return pd.DataFrame(columns)
