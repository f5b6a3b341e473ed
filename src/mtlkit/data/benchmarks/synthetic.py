"""Synthetic regression benchmarks where sharing architectures and balancing methods differ.

* ``synthetic-correlation``, the data of the MMoE paper (Ma et al., KDD 2018, §4): two regression
  tasks whose correlation is set by ``correlation`` ``p`` in [0, 1]. With orthonormal
  ``u₁, u₂ ∈ R^d`` and scale ``c``, ``w₁ = c·u₁`` and ``w₂ = c·(p·u₁ + √(1-p²)·u₂)``;
  ``x ~ N(0, I_d)`` and ``yₜ = wₜᵀx + Σᵢ sin(αᵢ·wₜᵀx + βᵢ) + εₜ``, ``εₜ ~ N(0, 0.01)``
  (``d = 100``, ``m = 10`` sines, ``c = 1``; the paper leaves ``αᵢ, βᵢ`` as given parameters:
  here they are drawn from N(0, 1) by the seed).
* ``gradnorm-toy``, the toy of GradNorm (Chen et al., ICML 2018, arXiv 1711.02257, §4): K
  regression tasks ``fₖ(x) = σₖ·tanh((B + εₖ)·x)`` on ``x ~ N(0, I₂₅₀)``, ``B`` and ``εₖ`` with
  entries from N(0, 10) and N(0, 3.5) (variances), the scales ``σₖ`` log-spaced from 1 to 100.
  The paper's outputs are 100-dimensional; here each task is one value (mtlkit's regression
  tasks are scalar), so ``B`` and ``εₖ`` are vectors. Its targets are not standardised (the
  tasks' ``target_std`` is 1): the scales reach the losses, which is the point of the toy.

Each is a pure function of its options and seed, generated once and cached in
``<data dir>/benchmarks/`` with its recipe and fingerprint (:mod:`.cache`); the inputs are rows of
features (``(N, d)`` float32), the targets float32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from mtlkit.data.benchmarks.cache import cached_arrays
from mtlkit.data.benchmarks.common import carve_validation, check_options, options_fingerprint
from mtlkit.data.benchmarks.registry import BENCHMARKS, Benchmark
from mtlkit.data.errors import DataError
from mtlkit.data.paths import PathLike, resolve_data_dir
from mtlkit.data.types import MultiTaskData, Split, TaskSpec

__all__ = ["correlation_arrays", "gradnorm_toy_arrays", "toy_scales"]

RECIPE_VERSION = 1
TRAIN_SIZE, TEST_SIZE = 10_000, 2_000
"""Samples generated for the training (validation carved from it) and test splits."""
PROTOCOL = "standard"
CORRELATION_DIM, CORRELATION_SINES, CORRELATION_SCALE, CORRELATION_NOISE_STD = 100, 10, 1.0, 0.1
TOY_DIM, TOY_B_VARIANCE, TOY_EPS_VARIANCE, TOY_SCALE_RANGE = 250, 10.0, 3.5, (1.0, 100.0)
MAX_TOY_TASKS = 100
_STREAMS = {"parameters": 0, "train": 1, "test": 2, "val": 3}


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS[stream]]))


def correlation_arrays(seed: int, correlation: float) -> dict[str, np.ndarray]:
    """The ``synthetic-correlation`` arrays: ``<split>.inputs``, ``<split>.y1``, ``<split>.y2``
    for ``train`` and ``test``, and the parameters ``w1``, ``w2``, ``alpha``, ``beta``."""
    _check_correlation(correlation)
    rng = _rng(seed, "parameters")
    u, _ = np.linalg.qr(rng.standard_normal((CORRELATION_DIM, 2)))
    c, p = CORRELATION_SCALE, correlation
    weights = {"w1": c * u[:, 0], "w2": c * (p * u[:, 0] + np.sqrt(1.0 - p * p) * u[:, 1])}
    alpha = rng.standard_normal(CORRELATION_SINES)
    beta = rng.standard_normal(CORRELATION_SINES)
    arrays: dict[str, np.ndarray] = {**weights, "alpha": alpha, "beta": beta}
    for split, size in (("train", TRAIN_SIZE), ("test", TEST_SIZE)):
        draw = _rng(seed, split)
        inputs = draw.standard_normal((size, CORRELATION_DIM)).astype(np.float32)
        arrays[f"{split}.inputs"] = inputs
        x = inputs.astype(np.float64)  # the labels are exactly those of the stored inputs
        for task, w in (("y1", weights["w1"]), ("y2", weights["w2"])):
            z = x @ w
            sines = np.sin(alpha * z[:, None] + beta).sum(1)
            noise = draw.normal(0.0, CORRELATION_NOISE_STD, size)
            arrays[f"{split}.{task}"] = (z + sines + noise).astype(np.float32)
    return arrays


def gradnorm_toy_arrays(seed: int, num_tasks: int) -> dict[str, np.ndarray]:
    """The ``gradnorm-toy`` arrays: ``<split>.inputs`` and ``<split>.t<k>`` (k = 1..K) for
    ``train`` and ``test``, and the parameters ``B``, ``eps`` (K, d) and ``sigma`` (K,)."""
    _check_num_tasks(num_tasks)
    rng = _rng(seed, "parameters")
    b = rng.normal(0.0, np.sqrt(TOY_B_VARIANCE), TOY_DIM)
    eps = rng.normal(0.0, np.sqrt(TOY_EPS_VARIANCE), (num_tasks, TOY_DIM))
    sigma = toy_scales(num_tasks)
    arrays: dict[str, np.ndarray] = {"B": b, "eps": eps, "sigma": sigma}
    for split, size in (("train", TRAIN_SIZE), ("test", TEST_SIZE)):
        inputs = _rng(seed, split).standard_normal((size, TOY_DIM)).astype(np.float32)
        arrays[f"{split}.inputs"] = inputs
        values = sigma * np.tanh(inputs.astype(np.float64) @ (b + eps).T)
        for k in range(num_tasks):
            arrays[f"{split}.t{k + 1}"] = values[:, k].astype(np.float32)
    return arrays


def toy_scales(num_tasks: int) -> np.ndarray:
    """The ``gradnorm-toy`` task scales σₖ: log-spaced from 1 to 100 (1 for a single task)."""
    low, high = TOY_SCALE_RANGE
    return np.geomspace(low, high, num_tasks) if num_tasks > 1 else np.array([low])


def _check_correlation(correlation: float) -> None:
    if not isinstance(correlation, int | float) or not 0.0 <= correlation <= 1.0:
        raise DataError(f"correlation must be a number in [0, 1], got {correlation!r}.")


def _check_num_tasks(num_tasks: int) -> None:
    if not isinstance(num_tasks, int) or isinstance(num_tasks, bool) or num_tasks < 1:
        raise DataError(f"num_tasks must be a positive integer, got {num_tasks!r}.")
    if num_tasks > MAX_TOY_TASKS:
        raise DataError(f"num_tasks must be at most {MAX_TOY_TASKS}, got {num_tasks}.")


def _correlation_specs(protocol: str, correlation: float = 1.0) -> tuple[TaskSpec, ...]:
    return (TaskSpec("y1", type="regression"), TaskSpec("y2", type="regression"))


def _toy_specs(protocol: str, num_tasks: int = 10) -> tuple[TaskSpec, ...]:
    _check_num_tasks(num_tasks)
    return tuple(TaskSpec(f"t{k + 1}", type="regression") for k in range(num_tasks))


def _build(
    name: str,
    stem: str,
    generate: Callable[[], dict[str, np.ndarray]],
    recipe: Mapping[str, Any],
    specs: tuple[TaskSpec, ...],
    standardise: bool,
    *,
    seed: int,
    val_fraction: float,
    limit: int | None,
    data_dir: PathLike | None,
    quiet: bool,
) -> MultiTaskData:
    """Generate (or read from the cache) the arrays, carve validation, and make the splits."""
    check_options(seed, val_fraction, limit)
    cache = resolve_data_dir(data_dir) / "benchmarks" / f"{stem}-seed{seed}.npz"
    arrays, fingerprint = cached_arrays(
        cache, recipe, generate, f"{stem} (seed {seed})", quiet=quiet
    )
    train_index, val_index = carve_validation(TRAIN_SIZE, val_fraction, _rng(seed, "val"))
    train_index = train_index[:limit]
    fingerprint = options_fingerprint(fingerprint, val_fraction, limit)
    tasks = []
    for spec in specs:
        target = arrays[f"train.{spec.name}"][train_index]
        mean, std = (float(target.mean()), float(target.std())) if standardise else (0.0, 1.0)
        tasks.append(TaskSpec(spec.name, type="regression", target_mean=mean, target_std=std))

    def split(part: str, index: np.ndarray) -> Split:
        return Split(
            torch.from_numpy(arrays[f"{part}.inputs"][index]),
            {s.name: torch.from_numpy(arrays[f"{part}.{s.name}"][index]) for s in specs},
        )

    return MultiTaskData(
        name=name,
        protocol=PROTOCOL,
        tasks=tasks,
        train=split("train", train_index),
        val=None if val_index is None else split("train", val_index[:limit]),
        test=split("test", np.arange(TEST_SIZE)[:limit]),
        fingerprint=fingerprint,
    )


def _build_correlation(
    protocol: str,
    *,
    correlation: float = 1.0,
    seed: int = 0,
    val_fraction: float = 0.0,
    limit: int | None = None,
    data_dir: PathLike | None = None,
    quiet: bool = False,
) -> MultiTaskData:
    """``synthetic-correlation`` with label correlation parameter ``correlation`` (see the
    module's documentation); ``seed``, ``val_fraction``, ``limit``, ``data_dir`` and ``quiet``
    as for every benchmark."""
    _check_correlation(correlation)
    name = "synthetic-correlation"
    recipe = {
        "version": RECIPE_VERSION,
        "benchmark": name,
        "correlation": correlation,
        "seed": seed,
    }
    return _build(
        name,
        f"{name}-{correlation}",
        lambda: correlation_arrays(seed, correlation),
        recipe,
        _correlation_specs(protocol),
        True,
        seed=seed,
        val_fraction=val_fraction,
        limit=limit,
        data_dir=data_dir,
        quiet=quiet,
    )


def _build_toy(
    protocol: str,
    *,
    num_tasks: int = 10,
    seed: int = 0,
    val_fraction: float = 0.0,
    limit: int | None = None,
    data_dir: PathLike | None = None,
    quiet: bool = False,
) -> MultiTaskData:
    """``gradnorm-toy`` with ``num_tasks`` tasks ``t1`` … ``tK`` (see the module's
    documentation); the other options as for every benchmark."""
    _check_num_tasks(num_tasks)
    name = "gradnorm-toy"
    recipe = {"version": RECIPE_VERSION, "benchmark": name, "tasks": num_tasks, "seed": seed}
    return _build(
        name,
        f"{name}-k{num_tasks}",
        lambda: gradnorm_toy_arrays(seed, num_tasks),
        recipe,
        _toy_specs(protocol, num_tasks),
        False,
        seed=seed,
        val_fraction=val_fraction,
        limit=limit,
        data_dir=data_dir,
        quiet=quiet,
    )


BENCHMARKS.register(
    "synthetic-correlation",
    Benchmark(
        description="two regression tasks on 100 features whose correlation is set by "
        "data.correlation (MMoE paper, §4)",
        protocols=(PROTOCOL,),
        tasks=_correlation_specs,
        build=_build_correlation,
        options={"correlation": 1.0},
        recipe={
            "model": {"backbone": "mlp"},
            "optim": {"name": "adam", "lr": 1e-3},
            "train": {"epochs": 20},
        },
    ),
)
BENCHMARKS.register(
    "gradnorm-toy",
    Benchmark(
        description="K regression tasks σₖ·tanh((B + εₖ)·x) on 250 features, scales 1 to 100 "
        "(GradNorm paper's toy; K = data.num_tasks)",
        protocols=(PROTOCOL,),
        tasks=_toy_specs,
        build=_build_toy,
        options={"num_tasks": 10},
        # the paper's trunk: 4 fully connected ReLU layers of 100 units; Adam, whose step does
        # not scale with the losses (σₖ up to 100 makes SGD's diverge)
        recipe={
            "model": {"backbone": "mlp", "backbone_options": {"hidden": [100, 100, 100, 100]}},
            "optim": {"name": "adam", "lr": 1e-3},
            "train": {"epochs": 30},
        },
    ),
)
