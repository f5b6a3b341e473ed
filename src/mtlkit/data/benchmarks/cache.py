"""The on-disk cache of generated benchmarks: ``<name>.npz`` plus ``<name>.json``.

The ``.json`` holds the recipe the arrays were generated from and their fingerprint, the sha256
of the arrays. A cached copy is used only when its recipe is the one asked for and its arrays
still have that fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mtlkit.atomic import atomic_output
from mtlkit.data.notes import note


def fingerprint_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the arrays' names, dtypes, shapes and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.data)
    return digest.hexdigest()


def read_cached(
    path: Path, recipe: Mapping[str, Any], *, quiet: bool
) -> tuple[dict[str, np.ndarray], str] | None:
    """The cached arrays and fingerprint at ``path`` if made from ``recipe`` and intact.

    A missing cache gives ``None`` silently; a stale, unreadable or tampered one gives ``None``
    with a note saying that it will be rebuilt.
    """
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or meta.get("recipe") != recipe:
            note(f"{meta_path} records another recipe; rebuilding {path.name}.", quiet=quiet)
            return None
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        note(f"{path} is unreadable ({error}); rebuilding it.", quiet=quiet)
        return None
    fingerprint = fingerprint_arrays(arrays)
    if fingerprint != meta.get("fingerprint"):
        note(
            f"{path} does not match its fingerprint (expected {meta.get('fingerprint')}, found "
            f"{fingerprint}): it was modified or damaged; rebuilding it.",
            quiet=quiet,
        )
        return None
    return arrays, fingerprint


def write_cached(
    path: Path, recipe: Mapping[str, Any], arrays: Mapping[str, np.ndarray], fingerprint: str
) -> None:
    """Store ``arrays`` at ``path`` and their recipe and fingerprint beside it, atomically."""
    with atomic_output(path) as temporary, temporary.open("wb") as stream:
        np.savez(stream, **arrays)
    record = {"fingerprint": fingerprint, "recipe": dict(recipe)}
    with atomic_output(path.with_suffix(".json")) as temporary:
        temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def cached_arrays(
    path: Path,
    recipe: Mapping[str, Any],
    generate: Callable[[], dict[str, np.ndarray]],
    what: str,
    *,
    quiet: bool,
) -> tuple[dict[str, np.ndarray], str]:
    """The arrays cached at ``path`` for ``recipe`` and their fingerprint; generated (and cached,
    when the data dir is writable) if the cache is missing, stale or damaged."""
    cached = read_cached(path, recipe, quiet=quiet)
    if cached is not None:
        return cached
    note(f"building {what} into {path}", quiet=quiet)
    arrays = generate()
    fingerprint = fingerprint_arrays(arrays)
    try:
        write_cached(path, recipe, arrays, fingerprint)
    except OSError as error:
        note(f"could not cache {path} ({error}); it will be built again.", quiet=quiet)
    return arrays, fingerprint
