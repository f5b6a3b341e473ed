"""The exception types of the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """A data file, dataset or benchmark request is wrong or unavailable.

    The message names the file or dataset, says what is wrong and how to fix it.
    """


class InputError(DataError):
    """The user's own data is wrong: a table or array that cannot be used as given.

    Raised before any training starts; the message names the file, the column and the row (rows
    count from 1, the first row under a table's header), says what is wrong and how to fix it.
    The command line exits with status 2 on it, as on a configuration error.
    """
