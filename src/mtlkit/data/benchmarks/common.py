"""What every benchmark builder shares: option checks, the validation carve-out, image tensors,
the image classification recipe."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from mtlkit.data.errors import DataError

DIGIT_RECIPE = {
    "model": {"backbone": "cnn"},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 10},
}
"""The training recipe of the 28×28 image classification benchmarks (MNIST pairs, one dataset
per task): the seed CNN, SGD with momentum, 10 epochs."""


def check_options(seed: int, val_fraction: float, limit: int | None) -> None:
    """Refuse a negative seed, a ``val_fraction`` outside [0, 1) or a non-positive ``limit``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"load_benchmark: seed must be a non-negative integer, got {seed!r}.")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(
            f"load_benchmark: val_fraction must be in [0, 1), got {val_fraction!r}. "
            "Use 0 for no validation split."
        )
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DataError(f"load_benchmark: limit must be a positive integer or None, got {limit!r}.")


def carve_validation(
    size: int, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Train indices and validation indices (``None`` without validation), each sorted; the
    validation samples are a ``val_fraction`` share drawn by a permutation from ``rng``."""
    if not val_fraction:
        return np.arange(size), None
    val_size = round(size * val_fraction)
    if not 0 < val_size < size:
        raise DataError(
            f"load_benchmark: val_fraction={val_fraction} of {size} training samples leaves "
            f"{val_size} for validation and {size - val_size} for training; both must be "
            "non-empty. Choose another val_fraction."
        )
    order = rng.permutation(size)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def image_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) uint8 images as (N, 1, H, W) float32 in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)


def options_fingerprint(fingerprint: str, val_fraction: float, limit: int | None) -> str:
    """The fingerprint of a benchmark's arrays combined with ``val_fraction`` and ``limit`` when
    either is set (the same data carved or cut otherwise is other data)."""
    if not val_fraction and limit is None:
        return fingerprint
    options = f"{fingerprint}|val_fraction={val_fraction!r}|limit={limit!r}"
    return hashlib.sha256(options.encode()).hexdigest()
