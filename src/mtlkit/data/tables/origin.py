"""Where a table came from, so that every message can name the file, the column and the row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtlkit.data.errors import InputError


@dataclass(frozen=True)
class Origin:
    """The source of a table, for messages.

    Rows count from 1, the first row under the header; for a CSV file the message adds the line
    number in the file (the header is line 1).

    Attributes:
        name: the file's path, or a description such as ``"the DataFrame"``.
        csv: whether ``name`` is a CSV file with a header line.
    """

    name: str
    csv: bool = False

    def row(self, position: int) -> str:
        """``"row 17 (line 18)"`` for the 0-based row ``position``."""
        line = f" (line {position + 2})" if self.csv else ""
        return f"row {position + 1}{line}"

    def at(self, column: str | None = None, position: int | None = None) -> str:
        """``"customers.csv, column 'plan', row 17 (line 18)"``, leaving out what is ``None``."""
        parts = [self.name]
        if column is not None:
            parts.append(f"column {column!r}")
        if position is not None:
            parts.append(self.row(position))
        return ", ".join(parts)

    def first(self, series: pd.Series, flagged: np.ndarray) -> tuple[str, object]:
        """Where the first row flagged in ``flagged`` is (file, column, row), and its value."""
        position = int(np.flatnonzero(flagged)[0])
        return self.at(str(series.name), int(series.index[position])), series.iloc[position]

    def require(self, frame: pd.DataFrame, columns: Sequence[str], what: str, hint: str) -> None:
        """Refuse ``frame`` if it lacks any of ``columns``: an :class:`InputError` naming them
        as ``what`` (e.g. ``"feature column(s)"``), followed by ``hint``."""
        absent = [column for column in columns if column not in frame.columns]
        if absent:
            raise InputError(f"{self.name}: missing {what} {', '.join(map(repr, absent))}; {hint}")
