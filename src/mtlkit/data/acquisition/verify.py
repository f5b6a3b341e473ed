"""Checking data files against pinned payload digests, with a cache of past checks.

Hashing a 60k-image payload takes a noticeable fraction of a second, so a successful check leaves
a small stamp ``<file>.sha256-ok`` beside the file recording its size, modification time and
digest. A later check trusts the stamp only while the file's size and modification time are
unchanged and the digest is the expected one; otherwise it hashes again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mtlkit.atomic import atomic_output
from mtlkit.data.acquisition.idx import sha256_of_payload
from mtlkit.data.errors import DataError

STAMP_SUFFIX = ".sha256-ok"
QUARANTINE_SUFFIX = ".corrupt"


def check_payload(path: Path, expected: str, *, fix: str) -> str:
    """Hash ``path``'s payload and return the digest; raise if it is not ``expected``.

    No stamp is read or written: use it for files about to be moved into place.

    Raises:
        DataError: naming the file, both digests and ``fix``; also for a corrupt gzip stream.
    """
    actual = sha256_of_payload(path)
    if actual != expected:
        raise DataError(_mismatch(path, expected, actual) + fix)
    return actual


def verify_payload(path: Path, expected: str, *, fix: str, in_data_dir: bool) -> None:
    """Check ``path``'s payload digest against ``expected``.

    Args:
        path: the file, gzip or plain IDX.
        expected: the pinned sha256 of its decompressed bytes.
        fix: what the user should do if it fails, appended to the message.
        in_data_dir: the file is in mtlkit's data dir: trust and leave stamps beside it, and
            on failure rename it to ``<file>.corrupt`` so that it is never found again under its
            real name. Files elsewhere (system folders) are hashed every time and left alone.

    Raises:
        DataError: the digest differs or the file is corrupt.
    """
    if in_data_dir and _stamp_matches(path, expected):
        return
    before = path.stat()
    try:
        actual = sha256_of_payload(path)
        problem = "" if actual == expected else _mismatch(path, expected, actual)
    except DataError as error:
        problem = f"{error} "
    if not problem:
        if in_data_dir:
            write_stamp(path, actual, before)
        return
    if in_data_dir:
        problem += _move_aside(path)
    raise DataError(problem + fix)


def write_stamp(path: Path, digest: str, stat: os.stat_result | None = None) -> None:
    """Record that ``path`` (as of ``stat``, default: now) has payload digest ``digest``.

    A folder that cannot be written (a system folder) simply gets no stamp.
    """
    stat = stat or path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    try:
        with atomic_output(_stamp_path(path)) as temporary:
            temporary.write_text(json.dumps(record) + "\n")
    except OSError:
        return


def _move_aside(path: Path) -> str:
    """Rename a bad file to ``<file>.corrupt``; say what happened, for the error message."""
    moved = path.with_name(path.name + QUARANTINE_SUFFIX)
    try:
        os.replace(path, moved)
    except OSError as error:
        return f"It could not be moved aside ({error.strerror}): delete or replace it. "
    _stamp_path(path).unlink(missing_ok=True)
    return f"The file was moved aside to {moved.name}. "


def _stamp_matches(path: Path, expected: str) -> bool:
    try:
        record = json.loads(_stamp_path(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return record == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": expected}


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + STAMP_SUFFIX)


def _mismatch(path: Path, expected: str, actual: str) -> str:
    return f"{path}: payload sha256 mismatch: expected {expected}, found {actual}. "
