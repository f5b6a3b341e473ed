"""The preprocessing a run saves, by kind: images (:class:`ImageInputs`) or tables
(:class:`~mtlkit.data.tables.TablePreprocessing`), and reading new inputs with it.

:func:`preprocessing_from_dict` rebuilds either from the JSON a run folder holds.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mtlkit.data.acquisition.idx import read_idx
from mtlkit.data.errors import DataError, InputError
from mtlkit.data.paths import PathLike
from mtlkit.data.tables.preprocessing import TablePreprocessing
from mtlkit.data.types import Preprocessing

IMAGE_SUFFIXES = (".npy", ".npz", ".idx", ".gz", ".ubyte")
"""The image files :meth:`ImageInputs.read` takes (IDX files as MNIST ships them)."""


@dataclass(frozen=True)
class ImageInputs:
    """Images as the built-in benchmarks feed them: float32 (N, C, H, W) in [0, 1].

    Attributes:
        shape: the per-image shape ``(C, H, W)``.
    """

    shape: tuple[int, ...]
    kind: ClassVar[str] = "images"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The per-image shape ``(C, H, W)``."""
        return tuple(self.shape)

    def read(self, path: PathLike) -> torch.Tensor:
        """Images from a ``.npy``, ``.npz`` (its only array, or ``images``) or IDX file.

        uint8 pixels (0..255) are scaled to [0, 1]; floats must already be in [0, 1]. One
        channel may be left out: (N, H, W) is read as (N, 1, H, W).

        Raises:
            InputError: a missing or unreadable file, or images of another shape or range.
        """
        path = Path(path)
        images = _read_array(path)
        if images.ndim == len(self.shape) and self.shape[0] == 1:
            images = images[:, None]
        if tuple(images.shape[1:]) != tuple(self.shape):
            raise InputError(
                f"{path}: images of shape {tuple(images.shape[1:])}, but the model reads "
                f"{tuple(self.shape)}; give an (N, {', '.join(map(str, self.shape))}) array."
            )
        if images.dtype == np.uint8:
            return torch.from_numpy(images.astype(np.float32) / 255.0)
        if not np.issubdtype(images.dtype, np.floating):
            raise InputError(f"{path}: {images.dtype} images; give uint8 pixels or floats.")
        if images.size and (np.nanmin(images) < 0 or np.nanmax(images) > 1):
            raise InputError(
                f"{path}: float pixels in {np.nanmin(images):.3g}..{np.nanmax(images):.3g}; "
                "training saw [0, 1]: give uint8 pixels (0..255) or floats scaled to [0, 1]."
            )
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {"kind": self.kind, "shape": list(self.shape)}


def _read_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path} does not exist; give the path of an image file.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                names = arrays.files
                if len(names) != 1 and "images" not in names:
                    raise InputError(
                        f"{path}: holds arrays {names}; name the images' array 'images'."
                    )
                return arrays["images" if "images" in names else names[0]]
        if suffix in IMAGE_SUFFIXES:
            return read_idx(path)
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, DataError) as error:
        raise InputError(f"{path} is not a readable image file: {error}") from None
    raise InputError(
        f"{path}: unknown image file type {suffix!r}; use {', '.join(IMAGE_SUFFIXES)}."
    )


def preprocessing_from_dict(values: Mapping[str, Any]) -> Preprocessing:
    """The preprocessing that ``to_dict`` of an :class:`ImageInputs` or a
    :class:`~mtlkit.data.tables.TablePreprocessing` described.

    Raises:
        DataError: an unknown kind.
    """
    kind = values.get("kind")
    if kind == ImageInputs.kind:
        return ImageInputs(tuple(values["shape"]))
    if kind == TablePreprocessing.kind:
        return TablePreprocessing.from_dict(values)
    raise DataError(f"unknown preprocessing kind {kind!r}; expected 'images' or 'table'.")
