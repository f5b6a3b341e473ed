"""The one exception type of the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """A data file, dataset or benchmark request is wrong or unavailable.

    The message names the file or dataset, says what is wrong and how to fix it.
    """
