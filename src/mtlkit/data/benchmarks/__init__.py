"""Multi-task benchmarks by name (data shaping): what is built from the base datasets.

:data:`BENCHMARKS` holds every benchmark; :func:`load_benchmark` builds one. The MNIST-pair family
(``multi-mnist``, ``multi-fashion``, ``multi-fashion-mnist``) registers itself from
:mod:`mtlkit.data.benchmarks.mnist_pairs`; ``mnist+fashion`` (one dataset per task) from
:mod:`mtlkit.data.benchmarks.mnist_fashion`; ``synthetic-correlation`` and ``gradnorm-toy``
(regression) from :mod:`mtlkit.data.benchmarks.synthetic`; ``multi-mnist-dense`` (per-pixel
segmentation, depth and normals) from :mod:`mtlkit.data.benchmarks.dense_mnist`; ``nyuv2`` and
``cityscapes`` (a user's preprocessed copy) from :mod:`mtlkit.data.benchmarks.scenes`.
"""

from mtlkit.data.benchmarks import mnist_pairs as _mnist_pairs  # noqa: F401  (registers)

# isort: split
from mtlkit.data.benchmarks import mnist_fashion as _mnist_fashion  # noqa: F401  (listed after)

# isort: split
from mtlkit.data.benchmarks import synthetic as _synthetic  # noqa: F401  (listed after)

# isort: split
from mtlkit.data.benchmarks import dense_mnist as _dense_mnist  # noqa: F401  (listed after)

# isort: split
from mtlkit.data.benchmarks import scenes as _scenes  # noqa: F401  (listed last)
from mtlkit.data.benchmarks.registry import (
    BENCHMARKS,
    Benchmark,
    benchmark_tasks,
    get_benchmark,
    list_benchmarks,
    load_benchmark,
)

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "benchmark_tasks",
    "get_benchmark",
    "list_benchmarks",
    "load_benchmark",
]
