"""The MNIST-pair benchmarks: two items composed into one image, one task per item.

Each benchmark pairs every image of a base split with a partner and composes both into one image;
the tasks are the two items' classes, ``left`` (top-left item) and ``right`` (the other one).

A benchmark is a pure function of its name, protocol, seed and the base data (pinned by digest).
It is generated once and cached in ``<data dir>/benchmarks/<name>-<protocol>-seed<seed>.npz``
with a ``.json`` recording the recipe and the arrays' sha256 fingerprint; a cached copy whose
arrays no longer match the fingerprint is rebuilt. Random draws use explicit generators only:
one stream per split, derived from the seed.

To add a benchmark built by an existing protocol, add one ``_register_pair`` line at the end; a
new protocol is one composing function plus one line in ``_PROTOCOLS``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from mtlkit.data.acquisition.datasets import load_base
from mtlkit.data.acquisition.specs import DATASETS, DatasetSpec, get_spec
from mtlkit.data.benchmarks.cache import cached_arrays
from mtlkit.data.benchmarks.common import (
    DIGIT_RECIPE,
    carve_validation,
    check_options,
    image_tensor,
    options_fingerprint,
)
from mtlkit.data.benchmarks.compose import (
    PARETO_MAX_SHIFT,
    draw_partners,
    pareto_images,
    sener_images,
)
from mtlkit.data.benchmarks.registry import BENCHMARKS, Benchmark
from mtlkit.data.inputs import ImageInputs
from mtlkit.data.paths import DEBIAN_DATASETS_ROOT, PathLike, resolve_data_dir
from mtlkit.data.types import MultiTaskData, Split, TaskSpec

RECIPE_VERSION = 1
"""Bumped whenever generation changes, so that older caches are rebuilt."""

_SPLITS = ("train", "test")
_STREAMS = {"train": 0, "test": 1, "val": 2}
_TASK_NAMES = ("left", "right")
"""Every benchmark here has two tasks: the item on the left (top-left) and on the right."""

Labelled = tuple[np.ndarray, np.ndarray]
"""A base split: (N, 28, 28) uint8 images and (N,) int64 labels."""

Composed = tuple[np.ndarray, np.ndarray, np.ndarray]
"""One benchmark split: composed uint8 images, ``left`` labels, ``right`` labels."""

Composer = Callable[[np.random.Generator, Labelled, Labelled, bool], Composed]
"""A protocol: ``(rng, left source, right source, same_dataset)`` -> the composed split."""


def _compose_sener(
    rng: np.random.Generator, left: Labelled, right: Labelled, same_dataset: bool
) -> Composed:
    """Sener & Koltun (2018): a uniformly drawn partner, overlaid and resized to 28x28."""
    partners = draw_partners(rng, left[1], right[1], distinct=False)
    return sener_images(left[0], right[0][partners]), left[1], right[1][partners]


def _compose_pareto(
    rng: np.random.Generator, left: Labelled, right: Labelled, same_dataset: bool
) -> Composed:
    """Lin et al. (2019): a partner of another class (from the same dataset), random shifts."""
    partners = draw_partners(rng, left[1], right[1], distinct=same_dataset)
    shifts = rng.integers(0, PARETO_MAX_SHIFT + 1, size=(len(partners), 4))
    return pareto_images(left[0], right[0][partners], shifts), left[1], right[1][partners]


def _compose_pareto_published(
    rng: np.random.Generator, left: Labelled, right: Labelled, same_dataset: bool
) -> Composed:
    """ParetoMTL's published size (Lin et al., 2019: 120,000 training and 20,000 test images):
    every base image composed twice, each time with a partner and shifts drawn as in
    :func:`_compose_pareto`; the first round, then the second."""
    rounds = [_compose_pareto(rng, left, right, same_dataset) for _ in range(2)]
    images, left_labels, right_labels = (np.concatenate(part) for part in zip(*rounds))
    return images, left_labels, right_labels


_PROTOCOLS: Mapping[str, Composer] = MappingProxyType(
    {
        "sener": _compose_sener,
        "pareto": _compose_pareto,
        "pareto-published": _compose_pareto_published,
    }
)


@dataclass(frozen=True)
class _Pair:
    """A member of the family: which base dataset each of its two items comes from."""

    name: str
    left: str
    right: str


def _build_pair(
    pair: _Pair,
    protocol: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.0,
    limit: int | None = None,
    data_dir: PathLike | None = None,
    specs: Mapping[str, DatasetSpec] | None = None,
    system_root: PathLike = DEBIAN_DATASETS_ROOT,
    quiet: bool = False,
) -> MultiTaskData:
    """Load a pair benchmark, generating (and caching) it on first use.

    Args:
        pair: the family member.
        protocol: ``"sener"`` (28x28, ``multi-mnist`` only), ``"pareto"`` (36x36, one image
            per base image: 60,000/10,000) or ``"pareto-published"`` (36x36, each base image
            twice: ParetoMTL's 120,000/20,000).
        seed: non-negative seed of every random draw; the same seed gives the same data.
        val_fraction: share of train carved out, by a seeded permutation, as the validation
            split, in [0, 1); 0 means no validation split.
        limit: keep only the first ``limit`` samples of each split (after carving val).
        data_dir: the data dir (base datasets and the benchmark cache); default
            ``$MTLKIT_DATA``, else the user cache dir.
        specs: the base datasets by name; default the real ones. Tests pass small fakes.
        system_root: where system-wide dataset folders live (Debian's by default).
        quiet: print no notes or progress bars.

    Returns:
        The splits as float32 (N, 1, H, W) inputs in [0, 1] and int64 targets ``left`` and
        ``right``. ``fingerprint`` is the sha256 of the generated arrays, combined with
        ``val_fraction`` and ``limit`` when those are set.

    Raises:
        DataError: bad options, or unavailable base data.
    """
    name = pair.name
    check_options(seed, val_fraction, limit)
    specs = DATASETS if specs is None else specs
    left_spec, right_spec = get_spec(pair.left, specs), get_spec(pair.right, specs)
    recipe = {
        "version": RECIPE_VERSION,
        "benchmark": name,
        "protocol": protocol,
        "seed": seed,
        "base": {spec.name: dict(spec.payload_sha256) for spec in (left_spec, right_spec)},
    }
    cache = resolve_data_dir(data_dir) / "benchmarks" / f"{name}-{protocol}-seed{seed}.npz"
    base = functools.partial(load_base, data_dir=data_dir, system_root=system_root, quiet=quiet)
    arrays, fingerprint = cached_arrays(
        cache,
        recipe,
        lambda: _generate(protocol, seed, base, left_spec, right_spec),
        f"{name} ({protocol}, seed {seed})",
        quiet=quiet,
    )
    train_index, val_index = carve_validation(
        len(arrays["train.inputs"]), val_fraction, _rng(seed, "val")
    )
    fingerprint = options_fingerprint(fingerprint, val_fraction, limit)
    test_index = np.arange(len(arrays["test.inputs"]))
    return MultiTaskData(
        name=name,
        protocol=protocol,
        tasks=[
            TaskSpec(task, spec.num_classes)
            for task, spec in zip(_TASK_NAMES, (left_spec, right_spec))
        ],
        train=_split(arrays, "train", train_index[:limit]),
        val=None if val_index is None else _split(arrays, "train", val_index[:limit]),
        test=_split(arrays, "test", test_index[:limit]),
        fingerprint=fingerprint,
        preprocessing=ImageInputs((1, *arrays["train.inputs"].shape[1:])),
    )


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS[stream]]))


def _generate(
    protocol: str,
    seed: int,
    base: Callable[[DatasetSpec, str], Labelled],
    left_spec: DatasetSpec,
    right_spec: DatasetSpec,
) -> dict[str, np.ndarray]:
    """Every split's composed images and both label arrays, keyed ``<split>.<array>``."""
    compose = _PROTOCOLS[protocol]
    same_dataset = left_spec.name == right_spec.name
    arrays = {}
    for split in _SPLITS:
        left = base(left_spec, split)
        right = left if same_dataset else base(right_spec, split)
        images, left_labels, right_labels = compose(_rng(seed, split), left, right, same_dataset)
        arrays[f"{split}.inputs"] = images
        arrays[f"{split}.left"] = left_labels
        arrays[f"{split}.right"] = right_labels
    return arrays


def _split(arrays: Mapping[str, np.ndarray], split: str, index: np.ndarray) -> Split:
    return Split(
        inputs=image_tensor(arrays[f"{split}.inputs"][index]),
        targets={task: torch.from_numpy(arrays[f"{split}.{task}"][index]) for task in _TASK_NAMES},
    )


def _register_pair(
    name: str, description: str, left: str, right: str, protocols: tuple[str, ...]
) -> None:
    """Register one member of the family; its tasks take their classes from the base datasets."""
    pair = _Pair(name, left, right)
    tasks = tuple(
        TaskSpec(task, get_spec(base, DATASETS).num_classes)
        for task, base in zip(_TASK_NAMES, (left, right))
    )
    BENCHMARKS.register(
        name,
        Benchmark(
            description=description,
            protocols=protocols,
            tasks=lambda protocol: tasks,
            build=functools.partial(_build_pair, pair),
            recipe=DIGIT_RECIPE,
        ),
    )


_register_pair(
    "multi-mnist",
    "two overlapping MNIST digits; tasks: the left and the right digit",
    "mnist",
    "mnist",
    ("sener", "pareto", "pareto-published"),
)
_register_pair(
    "multi-fashion",
    "two overlapping Fashion-MNIST items of different classes",
    "fashion-mnist",
    "fashion-mnist",
    ("pareto", "pareto-published"),
)
_register_pair(
    "multi-fashion-mnist",
    "an MNIST digit (top-left) over a Fashion-MNIST item (bottom-right)",
    "mnist",
    "fashion-mnist",
    ("pareto", "pareto-published"),
)
