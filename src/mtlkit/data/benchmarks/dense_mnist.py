"""``multi-mnist-dense``: MultiMNIST scenes with per-pixel targets, made from MNIST alone.

Each 32×32 scene holds two MNIST digits (their central 20×20 crops) at random places on a tilted
background wall, the nearer digit drawn over the farther one. Three per-pixel tasks read it:

* ``segmentation`` (11 classes): 0 for the background, ``1 + digit`` for a digit's stroke
  (intensity > :data:`STROKE`; the nearer digit wins); faint stroke edges are void (−1).
* ``depth``: the wall's depth (a plane, 4 to 6, whose tilt the background's shading shows)
  and, on each digit's stroke, that digit's depth ``1 + 0.3·digit ± 0.15`` (so depth and class
  are related, as in real scenes); half of the scenes have a rectangular hole with no
  measurement (0, invalid), as a depth sensor leaves.
* ``normals``: the unit normals ``(−∂h/∂x, −∂h/∂y, 1)/‖·‖`` of the height field ``h = −depth``
  smoothed by a 3×3 box filter; zero (invalid) in the hole.

It is a pure function of its seed and MNIST (pinned by digest), generated once and cached in
``<data dir>/benchmarks/`` with its recipe and fingerprint (:mod:`.cache`): 4,000 training scenes
from MNIST's training images and 1,000 test scenes from its test images. Inputs are (N, 1, 32, 32)
float32 in [0, 1]; targets (N, 32, 32) int64 classes, (N, 32, 32) float32 depths and
(N, 3, 32, 32) float32 normals.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import numpy as np
import torch

from mtlkit.data.acquisition.datasets import load_base
from mtlkit.data.acquisition.specs import DATASETS, DatasetSpec, get_spec
from mtlkit.data.benchmarks.cache import cached_arrays
from mtlkit.data.benchmarks.common import carve_validation, check_options, options_fingerprint
from mtlkit.data.benchmarks.registry import BENCHMARKS, Benchmark
from mtlkit.data.inputs import ImageInputs
from mtlkit.data.paths import DEBIAN_DATASETS_ROOT, PathLike, resolve_data_dir
from mtlkit.data.types import MultiTaskData, Split, TaskSpec

__all__ = ["dense_scenes"]

NAME, PROTOCOL = "multi-mnist-dense", "standard"
RECIPE_VERSION = 1
SIZES = {"train": 4_000, "test": 1_000}
CANVAS, CROP = 32, slice(4, 24)
"""The scene's side, and the 20×20 box of an MNIST image its digit is centred in."""
STROKE, EDGE = 0.5, 0.1
"""Intensities above ``STROKE`` are a digit's stroke; between ``EDGE`` and it, void edges."""
NUM_CLASSES = 11
WALL_DEPTH, WALL_TILT, WALL_SHADE = 5.0, 1.0, 0.2
DIGIT_DEPTH, DIGIT_STEP, DIGIT_JITTER = 1.0, 0.3, 0.15
HOLE_CHANCE, HOLE_SIDES = 0.5, (4, 11)
_STREAMS = {"train": 0, "test": 1, "val": 2}


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS[stream]]))


def _box_blur(image: np.ndarray) -> np.ndarray:
    """The 3×3 mean of each pixel (edges replicated)."""
    padded = np.pad(image, 1, mode="edge")
    side = image.shape[0]
    return sum(padded[i : i + side, j : j + side] for i in range(3) for j in range(3)) / 9.0


def _normals(depth: np.ndarray) -> np.ndarray:
    """(3, H, W) unit normals of the height field ``−depth`` smoothed by :func:`_box_blur`."""
    height = -_box_blur(depth)
    dy, dx = np.gradient(height)
    vectors = np.stack([-dx, -dy, np.ones_like(height)])
    return vectors / np.linalg.norm(vectors, axis=0, keepdims=True)


def _scene(
    rng: np.random.Generator, images: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, ...]:
    """One scene from two base digits: (input, classes, depth, normals)."""
    rows = np.arange(CANVAS, dtype=np.float64)[:, None].repeat(CANVAS, 1)
    tilt = rng.uniform(-WALL_TILT, WALL_TILT)
    slope = (rows - CANVAS / 2) / (CANVAS / 2)
    depth = WALL_DEPTH + tilt * slope
    shade = WALL_SHADE * (depth - (WALL_DEPTH - WALL_TILT)) / (2 * WALL_TILT)
    classes = np.zeros((CANVAS, CANVAS), dtype=np.int8)
    picks = rng.integers(0, len(images), size=2)
    digit_depths = (
        DIGIT_DEPTH + DIGIT_STEP * labels[picks] + rng.uniform(-DIGIT_JITTER, DIGIT_JITTER, size=2)
    )
    strokes = np.zeros((CANVAS, CANVAS))
    for k in np.argsort(-digit_depths):  # the farther digit first, the nearer over it
        y, x = rng.integers(0, CANVAS - 20 + 1, size=2)
        layer = np.zeros((CANVAS, CANVAS))
        layer[y : y + 20, x : x + 20] = images[picks[k]][CROP, CROP] / 255.0
        stroke = layer > STROKE
        classes[stroke] = 1 + labels[picks[k]]
        depth[stroke] = digit_depths[k]
        strokes = np.maximum(strokes, layer)
    classes[(strokes > EDGE) & (classes == 0)] = -1
    normals = _normals(depth)
    if rng.random() < HOLE_CHANCE:
        h, w = rng.integers(*HOLE_SIDES, size=2)
        y, x = rng.integers(0, CANVAS - h + 1), rng.integers(0, CANVAS - w + 1)
        depth[y : y + h, x : x + w] = 0.0
        normals[:, y : y + h, x : x + w] = 0.0
    scene = np.maximum(shade, strokes)
    return np.round(scene * 255).astype(np.uint8), classes, depth, normals


def dense_scenes(
    seed: int, base: Callable[[str], tuple[np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Every split's arrays, keyed ``<split>.<inputs|segmentation|depth|normals>``, from
    ``base(split)`` → (MNIST images, labels); depths and normals stored as float16."""
    arrays: dict[str, np.ndarray] = {}
    for split, size in SIZES.items():
        images, labels = base(split)
        rng = _rng(seed, split)
        scenes = [_scene(rng, images, labels) for _ in range(size)]
        for index, key in enumerate(("inputs", "segmentation", "depth", "normals")):
            stacked = np.stack([scene[index] for scene in scenes])
            arrays[f"{split}.{key}"] = (
                stacked.astype(np.float16) if stacked.dtype == np.float64 else stacked
            )
    return arrays


def _specs(protocol: str = PROTOCOL) -> tuple[TaskSpec, ...]:
    return (
        TaskSpec("segmentation", NUM_CLASSES, type="segmentation"),
        TaskSpec("depth", type="depth"),
        TaskSpec("normals", type="normals"),
    )


def _split(arrays: Mapping[str, np.ndarray], part: str, index: np.ndarray) -> Split:
    def target(key: str) -> torch.Tensor:
        values = arrays[f"{part}.{key}"][index]
        dtype = np.int64 if key == "segmentation" else np.float32
        return torch.from_numpy(values.astype(dtype))

    inputs = arrays[f"{part}.inputs"][index].astype(np.float32) / 255.0
    return Split(
        torch.from_numpy(inputs).unsqueeze(1),
        {key: target(key) for key in ("segmentation", "depth", "normals")},
    )


def _build(
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
    """Load ``multi-mnist-dense`` (see the module's documentation), generating and caching it
    on first use; ``seed``, ``val_fraction``, ``limit``, ``data_dir``, ``specs``,
    ``system_root`` and ``quiet`` as for the MNIST-pair benchmarks."""
    check_options(seed, val_fraction, limit)
    mnist = get_spec("mnist", DATASETS if specs is None else specs)
    recipe = {
        "version": RECIPE_VERSION,
        "benchmark": NAME,
        "seed": seed,
        "base": {mnist.name: dict(mnist.payload_sha256)},
    }
    cache = resolve_data_dir(data_dir) / "benchmarks" / f"{NAME}-seed{seed}.npz"
    base = functools.partial(
        load_base, mnist, data_dir=data_dir, system_root=system_root, quiet=quiet
    )
    arrays, fingerprint = cached_arrays(
        cache, recipe, lambda: dense_scenes(seed, base), f"{NAME} (seed {seed})", quiet=quiet
    )
    train, val = carve_validation(SIZES["train"], val_fraction, _rng(seed, "val"))
    return MultiTaskData(
        name=NAME,
        protocol=protocol,
        tasks=list(_specs()),
        train=_split(arrays, "train", train[:limit]),
        val=None if val is None else _split(arrays, "train", val[:limit]),
        test=_split(arrays, "test", np.arange(SIZES["test"])[:limit]),
        fingerprint=options_fingerprint(fingerprint, val_fraction, limit),
        preprocessing=ImageInputs((1, CANVAS, CANVAS)),
    )


BENCHMARKS.register(
    NAME,
    Benchmark(
        description="two MNIST digits in a 32×32 scene with per-pixel targets; tasks: "
        "segmentation (11 classes), depth, surface normals",
        protocols=(PROTOCOL,),
        tasks=_specs,
        build=_build,
        recipe={
            "model": {"backbone": "segnet"},
            "optim": {"name": "adam", "lr": 0.003},
            "train": {"epochs": 5, "batch_size": 64},
        },
    ),
)
