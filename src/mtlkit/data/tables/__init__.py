"""A user's own tables: reading, checking, splitting and encoding (data shaping for tables).

* :func:`load_table` — one table, several tasks (missing labels allowed), or one table per task
  (multi-input), as a :class:`~mtlkit.data.MultiTaskData`;
* :class:`TableTask` — a task's type and label column(s);
* :class:`TablePreprocessing` — the fitted feature and target encoders, saved as JSON;
* :func:`read_table` — a CSV, Parquet or ``.npz`` file, a DataFrame or a mapping of arrays;
  :func:`write_table` — a CSV or Parquet file.

Bad input raises :class:`~mtlkit.data.InputError` naming the file, column and row.
"""

from mtlkit.data.tables.dataset import load_table
from mtlkit.data.tables.features import MAX_CATEGORIES, FeatureEncoder
from mtlkit.data.tables.origin import Origin
from mtlkit.data.tables.preprocessing import TablePreprocessing
from mtlkit.data.tables.read import TABLE_SUFFIXES, TableSource, read_table
from mtlkit.data.tables.targets import TARGETS, TableTask
from mtlkit.data.tables.write import WRITE_SUFFIXES, write_table

__all__ = [
    "MAX_CATEGORIES",
    "TABLE_SUFFIXES",
    "TARGETS",
    "WRITE_SUFFIXES",
    "FeatureEncoder",
    "Origin",
    "TablePreprocessing",
    "TableSource",
    "TableTask",
    "load_table",
    "read_table",
    "write_table",
]
