"""Shared test fixtures."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

if TYPE_CHECKING:
    from mtlkit.data import DatasetSpec


@dataclass(frozen=True)
class FakeBaseData:
    """Tiny MNIST-like base datasets in a temporary data dir, for tests that need benchmarks.

    ``load_benchmark(name, protocol=..., **fake.kwargs)`` builds any benchmark from them, offline.
    """

    data_dir: Path
    system_root: Path
    specs: dict[str, DatasetSpec]

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments pointing ``load_benchmark`` / ``load_base`` at the fakes, quietly."""
        return {
            "data_dir": self.data_dir,
            "specs": self.specs,
            "system_root": self.system_root,
            "quiet": True,
        }


def _write_fake_dataset(
    folder: Path, name: str, *, train: int = 50, test: int = 20, seed: int = 0
) -> DatasetSpec:
    """Write a random 28x28 uint8 IDX dataset (labels 0..9) into ``folder/name``; return its spec.

    The spec pins the files' digests and has no upstream URLs and no registry copy.
    """
    from mtlkit.data import DatasetSpec, sha256_of_payload, write_idx
    from mtlkit.data.acquisition.specs import STANDARD_SPLITS

    rng = np.random.default_rng(seed)
    digests = {}
    for split, size in (("train", train), ("test", test)):
        images_file, labels_file = STANDARD_SPLITS[split]
        arrays = {
            images_file: rng.integers(0, 256, size=(size, 28, 28), dtype=np.uint8),
            labels_file: rng.integers(0, 10, size=size).astype(np.uint8),
        }
        for file, array in arrays.items():
            path = folder / name / f"{file}.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_idx(path, array, compress=True)
            digests[file] = sha256_of_payload(path)
    return DatasetSpec(name=name, description=f"fake {name}", payload_sha256=digests)


@pytest.fixture
def make_fake_dataset():
    """The writer of tiny fake IDX datasets: ``make_fake_dataset(folder, name, train=, test=)``."""
    return _write_fake_dataset


@pytest.fixture
def fake_base_data(tmp_path: Path) -> FakeBaseData:
    """Fake ``mnist`` (50 train / 20 test) and ``fashion-mnist`` (40 / 16) in a fresh data dir."""
    data_dir = tmp_path / "data"
    specs = {
        "mnist": _write_fake_dataset(data_dir, "mnist", seed=1),
        "fashion-mnist": _write_fake_dataset(data_dir, "fashion-mnist", train=40, test=16, seed=2),
    }
    return FakeBaseData(data_dir=data_dir, system_root=tmp_path / "no-system-datasets", specs=specs)


@pytest.fixture
def offline_data(monkeypatch, fake_base_data):
    """Make the workflows (and so the CLI) build benchmarks from the tiny fake base datasets."""
    from mtlkit.data import load_benchmark
    from mtlkit.workflows import build

    def load_fake(name, **options):
        return load_benchmark(name, **{**options, **fake_base_data.kwargs})

    monkeypatch.setattr(build, "load_benchmark", load_fake)


TINY_CONFIG: dict[str, Any] = {
    "name": "tiny",
    "model": {"backbone": "mlp"},
    "data": {"val_fraction": 0.2},
    "train": {"epochs": 1, "batch_size": 16, "progress": False},
}
"""The smallest config that trains a run end to end: one epoch of multi-mnist (fake, through
``offline_data``) in batches of 16, an mlp trunk, a validation split, no progress bar."""


def _merged(raw: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """Apply ``changes`` to ``raw``: a mapping updates its section key by key, a value
    replaces the key."""
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **copy.deepcopy(dict(value))}
        else:
            raw[key] = copy.deepcopy(value)


@pytest.fixture
def tiny_config() -> Callable[..., dict[str, Any]]:
    """The maker of :data:`TINY_CONFIG` variants: ``tiny_config(*changes, **sections)`` is a
    fresh raw config with each mapping of ``changes``, then ``sections``, merged in (a mapping
    updates its section key by key, a value replaces the key)."""

    def make(*changes: Mapping[str, Any], **sections: Any) -> dict[str, Any]:
        raw = copy.deepcopy(TINY_CONFIG)
        for change in (*changes, sections):
            _merged(raw, change)
        return raw

    return make


@pytest.fixture
def postgres_url():
    """The URL of a PostgreSQL server started for the test (Debian's ``postgresql``, which
    .ci/run installs); the test skips, saying why, where it is not installed."""
    from postgres_server import postgres_server, server_binaries

    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's server is not installed (apt-get install postgresql)")
    with postgres_server(binaries) as url:
        yield url


@pytest.fixture
def small_dense(monkeypatch):
    """``multi-mnist-dense`` generated at 24 training and 8 test scenes (from whatever MNIST the
    test gives it, e.g. :func:`fake_base_data`)."""
    from mtlkit.data.benchmarks import dense_mnist

    monkeypatch.setattr(dense_mnist, "SIZES", {"train": 24, "test": 8})


@pytest.fixture
def one_torch_thread():
    """Run a test on one intra-op thread, then restore the count.

    Tests on tiny tensors are faster on one thread, and immune to the thread wake-up cost that
    batched small LAPACK calls pay on an oversubscribed machine (shared CI).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_ONE_PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4"
    "890000000d49444154789c63606060f80f00010401005fe5c34b000000004945"
    "4e44ae426082"
)
"""A valid 1×1 PNG."""


@pytest.fixture(autouse=True)
def _one_pixel_figures(request, monkeypatch):
    """Reports get a 1×1 PNG for every figure, so that the many tiny runs of the suite do not
    spend seconds drawing; tests marked ``real_figures`` draw them (the browser test does)."""
    if request.node.get_closest_marker("real_figures"):
        return
    from mtlkit.evaluation import plots

    for name in (
        "learning_curves_png",
        "cosine_png",
        "confusion_png",
        "heatmap_png",
        "interval_png",
        "tradeoff_png",
        "axes_png",
    ):
        monkeypatch.setattr(plots, name, lambda *args, **kwargs: _ONE_PIXEL_PNG)


@pytest.fixture(scope="session")
def customers_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The customers example (examples/customers) trained briefly: one epoch on 200 rows, one
    thread. Tests that change the folder work on a copy."""
    from mtlkit.cli.main import main

    config = Path(__file__).parents[1] / "examples" / "customers" / "config.yaml"
    run = tmp_path_factory.mktemp("customers") / "run"
    toy = ["--set", "train.epochs=1", "--set", "data.limit=200", "--set", "train.progress=false"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(config), *toy, "--out", str(run)]) == 0
    finally:
        torch.set_num_threads(threads)
    return run
