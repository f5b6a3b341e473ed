"""The fitted preprocessing of a table: features and targets, saved as JSON with a run.

:class:`TablePreprocessing` turns rows of a table (the training table's, or any later table with
the same columns) into input tensors and, where the label columns are there, targets and masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
import torch

from mtlkit.data.errors import InputError
from mtlkit.data.tables.features import FeatureEncoder
from mtlkit.data.tables.origin import Origin
from mtlkit.data.tables.targets import TargetEncoder, target_from_dict
from mtlkit.data.types import Split


@dataclass
class TablePreprocessing:
    """Everything fitted on the training rows of a table (or of per-task tables).

    Attributes:
        features: the feature encoder (numeric standardisation, one-hot categories).
        targets: task name -> its target encoder.
        columns: every column of the training table(s); a later table may hold these and no
            others.
    """

    features: FeatureEncoder
    targets: dict[str, TargetEncoder]
    columns: list[str]
    kind: ClassVar[str] = "table"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(D,)``: the number of values per row."""
        return (self.features.width,)

    def check_columns(self, frame: pd.DataFrame, origin: Origin) -> None:
        """Refuse a table with a column that training never saw, or without a feature column.

        Raises:
            InputError: naming the extra or missing columns.
        """
        extra = [column for column in frame.columns if column not in self.columns]
        if extra:
            raise InputError(
                f"{origin.name}: column(s) {', '.join(map(repr, extra))} were not in the "
                f"training table; the run knows the columns {', '.join(self.columns)}. Remove "
                "or rename them."
            )
        self.features.require(frame, origin)

    def inputs(self, frame: pd.DataFrame, origin: Origin, *, quiet: bool = False) -> torch.Tensor:
        """The (N, D) float32 inputs of ``frame``'s rows."""
        return torch.from_numpy(self.features.transform(frame, origin, quiet=quiet))

    def split(
        self,
        frame: pd.DataFrame,
        origin: Origin,
        rows: str,
        tasks: Sequence[str],
        *,
        quiet: bool = False,
    ) -> Split:
        """Inputs, targets and masks of ``tasks`` for ``frame``'s rows (``rows`` names them in
        messages, e.g. ``"the test rows"``).

        Raises:
            InputError: a missing column, a value that does not fit its column, a label the
                training rows never had.
        """
        targets, masks = {}, {}
        for task in tasks:
            targets[task], masks[task] = self.targets[task].transform(frame, origin, rows)
        return Split(self.inputs(frame, origin, quiet=quiet), targets, masks)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; :meth:`from_dict` reads them back."""
        return {
            "kind": self.kind,
            "columns": list(self.columns),
            **self.features.to_dict(),
            "targets": {task: encoder.to_dict() for task, encoder in self.targets.items()},
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TablePreprocessing:
        """The preprocessing :meth:`to_dict` described."""
        return cls(
            FeatureEncoder.from_dict(values),
            {task: target_from_dict(encoder) for task, encoder in values["targets"].items()},
            list(values["columns"]),
        )
