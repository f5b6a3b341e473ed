"""NYUv2 and Cityscapes, for those who have them, in the preprocessed ``.npy`` layout that MTAN
(Liu et al., CVPR 2019) distributes and LibMTL reads.

Neither can be downloaded by mtlkit: put the preprocessed folder at ``<data dir>/nyuv2`` or
``<data dir>/cityscapes`` (the data dir: ``data.data_dir``, else ``$MTLKIT_DATA``). The layout,
for every split folder ``train`` (training; the validation split is carved from it) and ``val``
(the test split, as the literature reports it)::

    <root>/<split>/image/<i>.npy    (H, W, 3) float image in [0, 1]
    <root>/<split>/label/<i>.npy    (H, W) class per pixel, −1 where void
    <root>/<split>/depth/<i>.npy    (H, W, 1) depth, 0 where unmeasured
    <root>/<split>/normal/<i>.npy   (H, W, 3) unit normal, 0 where missing (NYUv2 only)

with ``i`` = 0 … N−1 in each folder. The published sets: NYUv2 795 training and 654 test scenes
at 288×384, 13 classes, tasks segmentation, depth and normals; Cityscapes 2,975 and 500 at
128×256, 7 classes (MTAN names its label folder ``label_7``, which is read too), tasks
segmentation and depth. Any resolution is read as long as every file of the set agrees; a missing
or misshapen file is refused (:class:`~mtlkit.data.InputError`, exit status 2) with the layout.

The arrays are read into memory (about 2.5 GB for NYUv2 as float32); the fingerprint is the
sha256 of everything read.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtlkit.data.benchmarks.cache import fingerprint_arrays
from mtlkit.data.benchmarks.common import carve_validation, check_options, options_fingerprint
from mtlkit.data.benchmarks.registry import BENCHMARKS, Benchmark
from mtlkit.data.errors import InputError
from mtlkit.data.inputs import ImageInputs
from mtlkit.data.notes import note
from mtlkit.data.paths import PathLike, resolve_data_dir
from mtlkit.data.types import MultiTaskData, Split, TaskSpec

__all__ = ["SceneSet", "read_scenes"]

PROTOCOL = "standard"
_SPLITS = {"train": "train", "test": "val"}
"""Our split name -> the folder holding it."""
_CHANNELS = {"image": 3, "depth": 1, "normal": 3}
"""The trailing channel axis of each folder's arrays (labels have none)."""


@dataclass(frozen=True)
class SceneSet:
    """A preprocessed scene dataset: where it lives under the data dir and what it holds.

    Attributes:
        name: the benchmark's name (and its folder under the data dir).
        num_classes: the segmentation classes.
        folders: task name -> the folder holding its targets.
        label_folders: the folder names a set's labels may have, first found wins.
        published: the published (train, test) sizes and resolution, for messages.
    """

    name: str
    num_classes: int
    folders: Mapping[str, str]
    label_folders: tuple[str, ...]
    published: str

    def specs(self, protocol: str = PROTOCOL) -> tuple[TaskSpec, ...]:
        """Its tasks (known without reading anything)."""
        types = {"label": "segmentation", "depth": "depth", "normal": "normals"}
        return tuple(
            TaskSpec(
                task,
                self.num_classes if folder == "label" else None,
                type=types[folder],
            )
            for task, folder in self.folders.items()
        )

    def layout(self, root: Path) -> str:
        """The expected layout, for error messages."""
        folders = "|".join(["image", *self.folders.values()])
        return (
            f"{root}/{{train,val}}/{{{folders}}}/<i>.npy, i = 0..N-1 (the preprocessed layout of "
            f"MTAN and LibMTL; published: {self.published})"
        )


NYUV2 = SceneSet(
    "nyuv2",
    13,
    {"segmentation": "label", "depth": "depth", "normals": "normal"},
    ("label",),
    "795 train / 654 val scenes at 288×384, 13 classes",
)
CITYSCAPES = SceneSet(
    "cityscapes",
    7,
    {"segmentation": "label", "depth": "depth"},
    ("label", "label_7"),
    "2975 train / 500 val scenes at 128×256, 7 classes",
)


def _folder(scenes: SceneSet, split_dir: Path, name: str, root: Path) -> Path:
    candidates = scenes.label_folders if name == "label" else (name,)
    for candidate in candidates:
        if (split_dir / candidate).is_dir():
            return split_dir / candidate
    raise InputError(
        f"{scenes.name}: no folder {split_dir / candidates[0]}. Expected {scenes.layout(root)}."
    )


def _read_folder(folder: Path, channels: int | None, scenes: SceneSet, root: Path) -> np.ndarray:
    """Every ``<i>.npy`` of ``folder`` stacked, checked to be i = 0..N−1 of one shape."""
    names = sorted(folder.glob("*.npy"), key=lambda p: (len(p.stem), p.stem))
    expected = [f"{i}.npy" for i in range(len(names))]
    if not names or [p.name for p in names] != expected:
        missing = sorted(set(expected) - {p.name for p in names}) or ["0.npy"]
        raise InputError(
            f"{scenes.name}: {folder} must hold 0.npy … N-1.npy; {missing[0]} is missing. "
            f"Expected {scenes.layout(root)}."
        )
    arrays = []
    for path in names:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"{scenes.name}: {path} is not a readable .npy ({error}).") from None
        if channels == 1 and array.ndim == 2:
            array = array[..., None]
        want = 2 if channels is None else 3
        if array.ndim != want or (channels is not None and array.shape[-1] != channels):
            shape = "(H, W)" if channels is None else f"(H, W, {channels})"
            raise InputError(
                f"{scenes.name}: {path} has shape {array.shape}, expected {shape}. Expected "
                f"{scenes.layout(root)}."
            )
        if arrays and array.shape != arrays[0].shape:
            raise InputError(
                f"{scenes.name}: {path} has shape {array.shape} but {names[0]} has "
                f"{arrays[0].shape}: every scene of a set has one resolution."
            )
        arrays.append(array)
    return np.stack(arrays)


def read_scenes(scenes: SceneSet, root: Path) -> dict[str, np.ndarray]:
    """The arrays of every split, keyed ``<split>.<image|task>``, as float32 (labels int64),
    channels first.

    Raises:
        InputError: a missing folder or file, a misshapen array, scenes whose images and targets
            disagree in number or resolution, or labels outside [−1, num_classes).
    """
    if not root.is_dir():
        raise InputError(
            f"{scenes.name} was not found at {root}: mtlkit cannot download it. Put the "
            f"preprocessed set there ({scenes.layout(root)}), or point data.data_dir (or "
            "$MTLKIT_DATA) at the folder holding it."
        )
    arrays: dict[str, np.ndarray] = {}
    for split, folder_name in _SPLITS.items():
        split_dir = root / folder_name
        image = _read_folder(_folder(scenes, split_dir, "image", root), 3, scenes, root)
        arrays[f"{split}.image"] = np.moveaxis(image.astype(np.float32), -1, 1)
        for task, name in scenes.folders.items():
            folder = _folder(scenes, split_dir, name, root)
            values = _read_folder(folder, _CHANNELS.get(name), scenes, root)
            if values.shape[:3] != image.shape[:3]:
                raise InputError(
                    f"{scenes.name}: {folder} holds {values.shape[0]} scenes of "
                    f"{values.shape[1:3]} but {split_dir / 'image'} holds {image.shape[0]} of "
                    f"{image.shape[1:3]}: a target per image, at the image's resolution."
                )
            arrays[f"{split}.{task}"] = _target(values, name, scenes, folder)
    return arrays


def _target(values: np.ndarray, name: str, scenes: SceneSet, folder: Path) -> np.ndarray:
    if name != "label":
        squeeze = values[..., 0] if name == "depth" else np.moveaxis(values, -1, 1)
        return squeeze.astype(np.float32)
    labels = values.astype(np.int64)
    if values.dtype.kind == "f" and not np.array_equal(labels, values):
        raise InputError(f"{scenes.name}: {folder} holds non-integer labels.")
    bad = (labels < -1) | (labels >= scenes.num_classes)
    if bad.any():
        raise InputError(
            f"{scenes.name}: {folder} holds label {labels[bad][0]}, outside 0..."
            f"{scenes.num_classes - 1} and not −1 (void)."
        )
    return labels


def _build(
    scenes: SceneSet,
    protocol: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.0,
    limit: int | None = None,
    data_dir: PathLike | None = None,
    quiet: bool = False,
) -> MultiTaskData:
    """Read ``scenes`` from ``<data dir>/<name>`` (see the module's documentation)."""
    check_options(seed, val_fraction, limit)
    root = resolve_data_dir(data_dir) / scenes.name
    note(f"reading {scenes.name} from {root}", quiet=quiet)
    arrays = read_scenes(scenes, root)
    tasks = list(scenes.folders)

    def split(part: str, index: np.ndarray) -> Split:
        return Split(
            torch.from_numpy(arrays[f"{part}.image"][index]),
            {task: torch.from_numpy(arrays[f"{part}.{task}"][index]) for task in tasks},
        )

    size = len(arrays["train.image"])
    train, val = carve_validation(size, val_fraction, np.random.default_rng([seed, 2]))
    return MultiTaskData(
        name=scenes.name,
        protocol=protocol,
        tasks=list(scenes.specs()),
        train=split("train", train[:limit]),
        val=None if val is None else split("train", val[:limit]),
        test=split("test", np.arange(len(arrays["test.image"]))[:limit]),
        fingerprint=options_fingerprint(fingerprint_arrays(arrays), val_fraction, limit),
        preprocessing=ImageInputs(tuple(arrays["train.image"].shape[1:])),
    )


SCENES_RECIPE = {
    "model": {"backbone": "segnet"},
    "optim": {"name": "adam", "lr": 1e-4},
    "schedule": {"name": "step", "step_size": 100, "gamma": 0.5},
    "train": {"epochs": 200, "batch_size": 2},
}
"""MTAN's protocol (Liu et al., CVPR 2019): SegNet, Adam at 1e-4 halved after 100 of 200 epochs,
batches of 2 scenes."""

for _scenes in (NYUV2, CITYSCAPES):
    BENCHMARKS.register(
        _scenes.name,
        Benchmark(
            description=f"your preprocessed {_scenes.name} in <data dir>/{_scenes.name} "
            f"(MTAN/LibMTL .npy layout; {_scenes.published}); tasks: " + ", ".join(_scenes.folders),
            protocols=(PROTOCOL,),
            tasks=_scenes.specs,
            build=functools.partial(_build, _scenes),
            recipe=SCENES_RECIPE,
        ),
    )
