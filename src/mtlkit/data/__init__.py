"""Data: containers and batching, the base datasets (acquisition), the benchmarks (shaping).

* :mod:`mtlkit.data.types` — :class:`Split` (inputs, per-task targets and label masks, in
  memory), :class:`Batch`, :class:`TaskSpec`, :class:`MultiTaskData` (one input for all tasks,
  or one :class:`Split` per task);
* :mod:`mtlkit.data.loader` — :class:`TensorBatches`, seeded in-memory mini-batches;
  :mod:`mtlkit.data.multi_input` — :class:`MultiInputBatches`, one batch per task and step;
* :mod:`mtlkit.data.acquisition` — the MNIST-family base datasets: found, fetched, verified;
* :mod:`mtlkit.data.benchmarks` — multi-task benchmarks by name, built from the base datasets;
* :mod:`mtlkit.data.tables` — a user's own tables: :func:`load_table`;
* :mod:`mtlkit.data.inputs` — the preprocessing a run saves (:class:`ImageInputs`, tables').

>>> from mtlkit.data import TensorBatches, load_benchmark
>>> data = load_benchmark("multi-mnist", protocol="sener", seed=0, val_fraction=0.1)
>>> for batch in TensorBatches(data.train, 256, shuffle=True, seed=0):
...     ...  # batch.inputs: (256, 1, 28, 28) float32; batch.targets["left"]: (256,) int64
"""

from mtlkit.data.acquisition import (
    DATASETS,
    FASHION_MNIST,
    MNIST,
    DatasetSpec,
    DatasetStatus,
    RegistryFetcher,
    fetch,
    list_datasets,
    load_base,
    locate,
    read_idx,
    sha256_of_payload,
    write_idx,
)
from mtlkit.data.benchmarks import (
    BENCHMARKS,
    Benchmark,
    benchmark_tasks,
    list_benchmarks,
    load_benchmark,
)
from mtlkit.data.errors import DataError, InputError
from mtlkit.data.inputs import ImageInputs, preprocessing_from_dict
from mtlkit.data.loader import TensorBatches
from mtlkit.data.multi_input import (
    EPOCH_POLICIES,
    MIXINGS,
    MultiInputBatches,
    TaskByTaskBatches,
    check_epoch_policy,
)
from mtlkit.data.paths import DATA_DIR_ENV, DEBIAN_DATASETS_ROOT, resolve_data_dir
from mtlkit.data.tables import (
    TablePreprocessing,
    TableTask,
    load_table,
    read_table,
)
from mtlkit.data.types import Batch, MultiTaskData, Preprocessing, Split, TaskSpec, TaskSplits

__all__ = [
    "BENCHMARKS",
    "DATASETS",
    "DATA_DIR_ENV",
    "DEBIAN_DATASETS_ROOT",
    "EPOCH_POLICIES",
    "FASHION_MNIST",
    "MIXINGS",
    "MNIST",
    "Batch",
    "Benchmark",
    "DataError",
    "DatasetSpec",
    "DatasetStatus",
    "ImageInputs",
    "InputError",
    "MultiInputBatches",
    "MultiTaskData",
    "Preprocessing",
    "RegistryFetcher",
    "Split",
    "TablePreprocessing",
    "TableTask",
    "TaskByTaskBatches",
    "TaskSpec",
    "TaskSplits",
    "TensorBatches",
    "benchmark_tasks",
    "check_epoch_policy",
    "fetch",
    "list_benchmarks",
    "list_datasets",
    "load_base",
    "load_benchmark",
    "load_table",
    "locate",
    "preprocessing_from_dict",
    "read_idx",
    "read_table",
    "resolve_data_dir",
    "sha256_of_payload",
    "write_idx",
]
