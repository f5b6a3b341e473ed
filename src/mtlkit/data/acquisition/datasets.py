"""Loading one split of a base dataset as numpy arrays."""

from __future__ import annotations

import numpy as np

from mtlkit.data.acquisition.idx import read_idx
from mtlkit.data.acquisition.sources import fetch, find_file, locate
from mtlkit.data.acquisition.specs import DatasetSpec, get_spec
from mtlkit.data.errors import DataError
from mtlkit.data.paths import DEBIAN_DATASETS_ROOT, PathLike


def load_base(
    name: str | DatasetSpec,
    split: str,
    data_dir: PathLike | None = None,
    *,
    system_root: PathLike = DEBIAN_DATASETS_ROOT,
    quiet: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One split of a base dataset, fetched first if it is not available locally.

    Args:
        name: the dataset's name (``"mnist"``, ``"fashion-mnist"``) or its spec.
        split: ``"train"`` or ``"test"`` (any split the spec declares).
        data_dir: the data dir; default ``$MTLKIT_DATA``, else the user cache dir.
        system_root: where system-wide dataset folders live (Debian's by default).
        quiet: print no notes or progress bars.

    Returns:
        ``(images, labels)``: uint8 images (N, H, W) and int64 labels (N,).

    Raises:
        DataError: unknown split, unavailable or corrupt files, or files that do not fit.
    """
    spec = get_spec(name)
    if split not in spec.splits:
        raise DataError(
            f"{spec.name}: unknown split {split!r}. Choose one of: {', '.join(spec.splits)}."
        )
    folder = locate(spec, data_dir, system_root=system_root) or fetch(
        spec, data_dir, quiet=quiet, system_root=system_root
    )
    images_file, labels_file = spec.splits[split]
    images_path, labels_path = find_file(folder, images_file), find_file(folder, labels_file)
    if images_path is None or labels_path is None:
        raise DataError(
            f"{spec.name}: {folder} lost a file of the {split!r} split while loading. Load again."
        )
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, H, W), found {images.dtype} "
            f"{images.shape}. Check the dataset spec's file names."
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path}: expected {len(images)} labels, one per image of {images_path.name}, "
            f"found shape {labels.shape}. Check the dataset spec's file names."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(
            f"{labels_path}: labels must be in 0..{spec.num_classes - 1}, found "
            f"{labels.min()}..{labels.max()}. Check the dataset spec's num_classes."
        )
    return images, labels.astype(np.int64)
