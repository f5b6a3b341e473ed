"""Feature columns to one float32 matrix: numbers standardised, categories one-hot encoded.

Everything is fitted on the training rows only and kept as plain values (JSON), so that
validation, test and any later data are encoded exactly the same way:

* a *numeric* column becomes ``(x - mean) / std`` with the training rows' mean and standard
  deviation (a constant column: std 1); a missing value becomes 0, the training mean;
* a *categorical* column becomes one 0/1 column per category seen in the training rows, in
  sorted order; a missing value, or a category never seen in training, is all zeros (unseen
  categories are counted in a note).

A column is categorical when it is listed as such, or when most of its values are not numbers;
otherwise it is numeric, and a value in it that is not a number is an error naming its row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mtlkit.data.errors import InputError
from mtlkit.data.notes import note
from mtlkit.data.tables.origin import Origin
from mtlkit.data.tables.values import (
    category_codes,
    count_non_numbers,
    numbers_or_error,
    unique_keys,
)

MAX_CATEGORIES = 1000
"""The default limit on a categorical feature's categories (an identifier column is refused)."""


@dataclass(frozen=True)
class NumericFeature:
    """A standardised numeric column."""

    column: str
    mean: float
    std: float


@dataclass(frozen=True)
class CategoricalFeature:
    """A one-hot encoded column: its categories' keys, in output order."""

    column: str
    categories: tuple[str, ...]


Feature = NumericFeature | CategoricalFeature


class FeatureEncoder:
    """Maps a table's feature columns to an (N, D) float32 matrix; see the module's doc.

    Build it with :meth:`fit`; :meth:`to_dict` and :meth:`from_dict` save and restore it.

    Args:
        features: the columns in output order, each numeric or categorical.
    """

    def __init__(self, features: Sequence[Feature]) -> None:
        self.features = list(features)

    @property
    def columns(self) -> list[str]:
        """The feature columns a table must hold."""
        return [feature.column for feature in self.features]

    @property
    def width(self) -> int:
        """D, the number of values per row."""
        return sum(1 if isinstance(f, NumericFeature) else len(f.categories) for f in self.features)

    @classmethod
    def fit(
        cls,
        parts: Sequence[tuple[pd.DataFrame, Origin]],
        columns: Sequence[str],
        *,
        categorical: Sequence[str] = (),
        max_categories: int = MAX_CATEGORIES,
        quiet: bool = False,
    ) -> FeatureEncoder:
        """Fit on the training rows, given as one or more ``(rows, origin)`` parts (one per
        table); no other row is ever looked at.

        Raises:
            InputError: a value that is not a number in a numeric column, a column without any
                value, or a categorical column with more than ``max_categories`` categories.
        """
        features: list[Feature] = []
        for column in columns:
            series = [frame[column] for frame, _ in parts]
            words = sum(count_non_numbers(s) for s in series)
            present = sum(int(s.notna().sum()) for s in series)
            if column in categorical or words > present / 2:
                features.append(_fit_categorical(column, series, parts, max_categories))
            else:
                features.append(_fit_numeric(column, series, parts, quiet))
        return cls(features)

    def transform(self, frame: pd.DataFrame, origin: Origin, *, quiet: bool = False) -> np.ndarray:
        """The (N, D) float32 matrix of ``frame``'s rows.

        Raises:
            InputError: a feature column is missing, or a numeric one holds a value that is not
                a number.
        """
        self.require(frame, origin)
        out = np.zeros((len(frame), self.width), dtype=np.float32)
        offset = 0
        for feature in self.features:
            series = frame[feature.column]
            if isinstance(feature, NumericFeature):
                values = numbers_or_error(
                    series, origin, "the column is a numeric feature", _NUMERIC_FIX
                )
                out[:, offset] = np.nan_to_num((values - feature.mean) / feature.std, nan=0.0)
                offset += 1
            else:
                found = category_codes(series, feature.categories)
                unseen = (found < 0) & ~series.isna().to_numpy()
                if unseen.any():
                    example = series[unseen].iloc[0]
                    note(
                        f"{origin.at(feature.column)}: {int(unseen.sum())} value(s) are categories "
                        "not seen "
                        f"in training (e.g. {example!r}); they are encoded as all zeros.",
                        quiet=quiet,
                    )
                rows = np.flatnonzero(found >= 0)
                out[rows, offset + found[rows]] = 1.0
                offset += len(feature.categories)
        return out

    def require(self, frame: pd.DataFrame, origin: Origin) -> None:
        """Refuse a table without every feature column (an :class:`InputError` naming them)."""
        hint = f"the model reads the columns {', '.join(self.columns)}."
        origin.require(frame, self.columns, "feature column(s)", hint)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "features": [
                {"column": f.column, "kind": "numeric", "mean": f.mean, "std": f.std}
                if isinstance(f, NumericFeature)
                else {"column": f.column, "kind": "categorical", "categories": list(f.categories)}
                for f in self.features
            ]
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FeatureEncoder:
        """The encoder :meth:`to_dict` described."""
        return cls(
            [
                NumericFeature(f["column"], float(f["mean"]), float(f["std"]))
                if f["kind"] == "numeric"
                else CategoricalFeature(f["column"], tuple(f["categories"]))
                for f in values["features"]
            ]
        )


_NUMERIC_FIX = (
    "correct it (leave the cell empty if the value is unknown), or list the column in "
    "data.categorical to one-hot encode it."
)


def _fit_numeric(
    column: str, series: list[pd.Series], parts: Sequence[tuple[pd.DataFrame, Origin]], quiet: bool
) -> NumericFeature:
    values = np.concatenate(
        [
            numbers_or_error(s, origin, "most of the column's values are numbers", _NUMERIC_FIX)
            for s, (_, origin) in zip(series, parts)
        ]
    )
    present = values[~np.isnan(values)]
    if present.size == 0:
        raise _no_value(column, parts)
    absent = len(values) - present.size
    if absent:
        note(
            f"{_names(parts)}, column {column!r}: {absent} training row(s) have no value; they "
            "are filled with the training mean.",
            quiet=quiet,
        )
    std = float(present.std())
    return NumericFeature(column, float(present.mean()), std if std > 0 else 1.0)


def _fit_categorical(
    column: str, series: list[pd.Series], parts: Sequence[tuple[pd.DataFrame, Origin]], limit: int
) -> CategoricalFeature:
    found = set().union(*(unique_keys(s) for s in series))
    if not found:
        raise _no_value(column, parts)
    if len(found) > limit:
        raise InputError(
            f"{_names(parts)}, column {column!r}: {len(found)} distinct values in the training "
            f"rows, more than data.max_categories = {limit}; an identifier is no feature: leave "
            "the column out of data.features (or raise data.max_categories)."
        )
    return CategoricalFeature(column, tuple(sorted(found)))


def _names(parts: Sequence[tuple[pd.DataFrame, Origin]]) -> str:
    return " and ".join(dict.fromkeys(origin.name for _, origin in parts))


def _no_value(column: str, parts: Sequence[tuple[pd.DataFrame, Origin]]) -> InputError:
    return InputError(
        f"{_names(parts)}, column {column!r}: no value in the training rows; leave the column "
        "out of data.features."
    )
