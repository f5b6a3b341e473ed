"""``mnist+fashion``: one dataset per task, one shared trunk (the multi-input setting).

Task ``digit`` classifies MNIST digits, task ``fashion`` Fashion-MNIST items; each trains and is
evaluated on its own images (28x28, one channel, in [0, 1]), through one trunk. Nothing is
composed, so nothing is cached: the base datasets are read (and verified by digest) each time.
The validation split of each task is carved from its own training images by a seeded
permutation, each task with its own stream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mtlkit.data.acquisition.datasets import load_base
from mtlkit.data.acquisition.specs import DATASETS, DatasetSpec, get_spec
from mtlkit.data.benchmarks.common import (
    DIGIT_RECIPE,
    carve_validation,
    check_options,
    image_tensor,
)
from mtlkit.data.benchmarks.registry import BENCHMARKS, Benchmark
from mtlkit.data.inputs import ImageInputs
from mtlkit.data.types import MultiTaskData, Split, TaskSpec

NAME = "mnist+fashion"
PROTOCOL = "standard"
_TASKS = {"digit": "mnist", "fashion": "fashion-mnist"}
"""Task name -> the base dataset it reads."""
_VAL_STREAM = 3


def _build(
    protocol: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.0,
    limit: int | None = None,
    specs: Mapping[str, DatasetSpec] | None = None,
    **base: Any,
) -> MultiTaskData:
    """Load ``mnist+fashion``: per task, its base dataset's train (less validation) and test.

    Args:
        protocol: ``"standard"``, the only one.
        seed: seeds the validation carve-out.
        val_fraction: share of each task's training images held out for validation.
        limit: keep only the first ``limit`` images of each task's splits.
        specs: the base datasets by name; default the real ones. Tests pass small fakes.
        **base: how the base datasets are found: ``data_dir``, ``system_root``, ``quiet`` (see
            :func:`~mtlkit.data.load_base`).

    Raises:
        DataError: bad options, or unavailable base data.
    """
    check_options(seed, val_fraction, limit)
    specs = DATASETS if specs is None else specs
    splits: dict[str, dict[str, Split]] = {"train": {}, "val": {}, "test": {}}
    digests = {}
    for number, (task, dataset) in enumerate(_TASKS.items()):
        spec = get_spec(dataset, specs)
        digests[task] = dict(spec.payload_sha256)
        images, labels = load_base(spec, "train", **base)
        rng = np.random.default_rng(np.random.SeedSequence([seed, _VAL_STREAM, number]))
        train, val = carve_validation(len(labels), val_fraction, rng)
        splits["train"][task] = _split(task, images, labels, train[:limit])
        if val is not None:
            splits["val"][task] = _split(task, images, labels, val[:limit])
        images, labels = load_base(spec, "test", **base)
        splits["test"][task] = _split(task, images, labels, np.arange(len(labels))[:limit])
    recipe = {"benchmark": NAME, "seed": seed, "val_fraction": val_fraction, "limit": limit}
    fingerprint = hashlib.sha256(json.dumps([recipe, digests], sort_keys=True).encode())
    return MultiTaskData(
        name=NAME,
        protocol=protocol,
        tasks=list(_specs(specs)),
        train=splits["train"],
        val=splits["val"] or None,
        test=splits["test"],
        fingerprint=fingerprint.hexdigest(),
        preprocessing=ImageInputs((1, *images.shape[1:])),
    )


def _split(task: str, images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> Split:
    return Split(image_tensor(images[index]), {task: torch.from_numpy(labels[index])})


def _specs(specs: Mapping[str, DatasetSpec] = DATASETS) -> tuple[TaskSpec, ...]:
    return tuple(TaskSpec(task, get_spec(base, specs).num_classes) for task, base in _TASKS.items())


BENCHMARKS.register(
    NAME,
    Benchmark(
        description="one dataset per task: MNIST digits (task digit) and Fashion-MNIST items "
        "(task fashion), one shared trunk",
        protocols=(PROTOCOL,),
        tasks=lambda protocol: _specs(),
        build=_build,
        multi_input=True,
        recipe=DIGIT_RECIPE,
    ),
)
