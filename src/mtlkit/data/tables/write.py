"""Writing a table: CSV or Parquet by the file's suffix, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mtlkit.atomic import atomic_output
from mtlkit.data.errors import InputError

WRITE_SUFFIXES = (".csv", ".parquet", ".pq")
"""The file types :func:`write_table` writes."""


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` (without its index) to ``path``: a ``.csv`` or ``.parquet`` file, which
    appears complete or not at all.

    Raises:
        InputError: ``path`` has another suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise InputError(
            f"{path}: cannot write a {suffix or 'suffix-less'} table; name a .csv or .parquet file."
        )
    with atomic_output(path) as temporary:
        if suffix == ".csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)
    return path
