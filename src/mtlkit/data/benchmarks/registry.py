"""Every benchmark by name: ``load_benchmark("multi-mnist", protocol="sener", seed=0)``.

A benchmark is a :class:`Benchmark` entry in :data:`BENCHMARKS`: a description, the protocols it
can be built by, its tasks (known without building anything, so that a config can be checked
before any work starts) and the function that builds it. A new benchmark family is one module
that registers its entries (see :mod:`mtlkit.data.benchmarks.mnist_pairs`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mtlkit.data.errors import DataError
from mtlkit.data.types import MultiTaskData, TaskSpec
from mtlkit.registry import Registry, UnknownNameError

__all__ = ["BENCHMARKS", "Benchmark", "benchmark_tasks", "list_benchmarks", "load_benchmark"]


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark.

    Attributes:
        description: one line for ``mtlkit data list``.
        protocols: the ways it can be built; the first is the default.
        tasks: ``tasks(protocol, **options)``: its tasks under a protocol and its own
            ``options``, without building anything.
        build: ``build(protocol, seed=, val_fraction=, limit=, data_dir=, **options)`` → the data.
        multi_input: whether each task has its own inputs (one split per task).
        options: the benchmark's own options (e.g. ``correlation``) with their defaults.
        recipe: the training it needs, as config sections → keys → values (e.g.
            ``{"optim": {"name": "adam", "lr": 1e-3}, "model": {"backbone": "mlp"}}``): the
            config's defaults for this benchmark, which a config's own keys override (see
            :mod:`mtlkit.config.recipes`). Plain values only: data does not know the config.
    """

    description: str
    protocols: tuple[str, ...]
    tasks: Callable[..., tuple[TaskSpec, ...]]
    build: Callable[..., MultiTaskData]
    multi_input: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
"""Benchmark name → :class:`Benchmark`."""


def get_benchmark(name: str, protocol: str) -> Benchmark:
    """The benchmark ``name``, checked to be defined for ``protocol``.

    Raises:
        DataError: unknown benchmark, or a protocol not defined for it.
    """
    try:
        bench = BENCHMARKS.get(name)
    except UnknownNameError as error:
        raise DataError(str(error)) from None
    if protocol not in bench.protocols:
        raise DataError(
            f"benchmark {name!r}: protocol {protocol!r} is not defined for it. Use one of: "
            f"{', '.join(bench.protocols)}."
        )
    return bench


def list_benchmarks() -> dict[str, str]:
    """Benchmark name → one-line description (with its protocols), in registry order."""
    return {
        name: f"{BENCHMARKS.get(name).description} "
        f"(protocols: {', '.join(BENCHMARKS.get(name).protocols)})"
        for name in BENCHMARKS
    }


def benchmark_tasks(name: str, protocol: str, **options: Any) -> tuple[str, ...]:
    """The task names of benchmark ``name`` built by ``protocol`` with its own ``options``
    (e.g. ``num_tasks``), without building anything.

    Raises:
        DataError: unknown benchmark, a protocol not defined for it, or bad options.
    """
    return tuple(spec.name for spec in get_benchmark(name, protocol).tasks(protocol, **options))


def load_benchmark(name: str, *, protocol: str | None = None, **options: Any) -> MultiTaskData:
    """Build (or read from its cache) the benchmark ``name``.

    Args:
        name: one of :func:`list_benchmarks`.
        protocol: how to build it (default: the benchmark's first protocol).
        **options: ``seed``, ``val_fraction``, ``limit``, ``data_dir`` and whatever else the
            benchmark's builder takes (see its module).

    Raises:
        DataError: unknown benchmark or protocol, bad options, or unavailable base data.
    """
    if protocol is None:
        try:
            protocol = BENCHMARKS.get(name).protocols[0]
        except UnknownNameError as error:
            raise DataError(str(error)) from None
    return get_benchmark(name, protocol).build(protocol, **options)
