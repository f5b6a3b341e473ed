"""Atomic file creation: a file appears complete under its name, or not at all."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path in ``path``'s folder; move it onto ``path`` on success.

    The folder is created if needed and the temporary file exists (empty) when the block
    starts, with the permissions the umask gives new files. The data is flushed to disk before
    the rename, and the rename before returning, so a power cut leaves the old or the new file.
    If the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield temporary
        _sync(temporary)
        os.replace(temporary, path)
        _sync(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    """fsync a file or a folder (folders only where the platform allows opening them)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):  # e.g. folders on Windows
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_durably(source: Path, target: Path) -> None:
    """Rename ``source`` onto ``target`` (same folder) and flush the folder, so the rename
    survives a power cut."""
    os.replace(source, target)
    _sync(target.parent)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def write_csv_atomic(
    path: str | os.PathLike[str], header: Sequence[object], rows: Iterable[Sequence[object]]
) -> Path:
    """Write a CSV table (a header row, then ``rows``) to ``path`` atomically; returns the path."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())
