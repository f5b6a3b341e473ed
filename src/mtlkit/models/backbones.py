"""Shared trunks by name: each maps a batch of inputs (N, *input_shape) to features (N, D).

Every trunk has an ``out_features`` attribute (D). :data:`BACKBONES` maps a name to a factory
``factory(input_shape) -> nn.Module`` taking the per-sample input shape: ``(C, H, W)`` for images,
``(D,)`` for rows of features. A new trunk is a class (or function) plus one ``register`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod

import torch
from torch import nn

from mtlkit.registry import Registry, UnknownNameError

BackboneFactory = Callable[[tuple[int, ...]], nn.Module]

BACKBONES: Registry[BackboneFactory] = Registry("backbone")
"""Backbone name → ``factory(input_shape)``."""


class SeedCNN(nn.Sequential):
    """The small CNN of the seed experiments: conv 32 → pool → conv 64 → pool → fc 256."""

    def __init__(self, in_channels: int, image_size: tuple[int, int]) -> None:
        h, w = image_size
        if h < 4 or w < 4:
            raise ValueError(f"the seed CNN needs images of at least 4×4 pixels, got {h}×{w}.")
        super().__init__(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), 256),
            nn.ReLU(),
        )
        self.out_features = 256


class LeNet(nn.Sequential):
    """The LeNet trunk of Sener & Koltun (2018): conv5 10 → pool → conv5 20 → pool → fc 50."""

    def __init__(self, in_channels: int, image_size: tuple[int, int]) -> None:
        h, w = image_size
        flat_h, flat_w = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        if flat_h < 1 or flat_w < 1:
            raise ValueError(f"LeNet needs images of at least 16×16 pixels, got {h}×{w}.")
        super().__init__(
            nn.Conv2d(in_channels, 10, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(10, 20, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(20 * flat_h * flat_w, 50),
            nn.ReLU(),
        )
        self.out_features = 50


class MLP(nn.Sequential):
    """A two-layer perceptron on flattened inputs (images or rows of features).

    Args:
        in_features: the number of input values per sample (C·H·W for images).
        hidden: the width of both hidden layers.
    """

    def __init__(self, in_features: int, hidden: int = 128) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.out_features = hidden


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, tuple[int, int]]:
    """``(channels, (height, width))`` of a ``(C, H, W)`` input shape, or a clear error."""
    if len(input_shape) != 3:
        raise ValueError(
            f"backbone {name!r} reads images of shape (C, H, W); the inputs have shape "
            f"{input_shape}. Use backbone 'mlp' for rows of features."
        )
    channels, height, width = input_shape
    return channels, (height, width)


BACKBONES.register("cnn", lambda shape: SeedCNN(*_image_shape("cnn", shape)))
BACKBONES.register("lenet", lambda shape: LeNet(*_image_shape("lenet", shape)))
BACKBONES.register("mlp", lambda shape: MLP(prod(shape)))


def create_backbone(name: str, input_shape: Sequence[int]) -> nn.Module:
    """Create the trunk registered as ``name`` for inputs of per-sample shape ``input_shape``.

    The trunk runs once on a zero input here, so that a shape it cannot take fails now, not in
    the middle of training.

    Raises:
        ValueError: unknown name (the message lists the known ones), or inputs the trunk cannot
            read.
    """
    shape = tuple(int(n) for n in input_shape)
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"input_shape must be non-empty positive sizes, got {tuple(input_shape)}.")
    try:
        factory = BACKBONES.get(name)
    except UnknownNameError as error:
        raise ValueError(str(error)) from None
    trunk = factory(shape)
    with torch.no_grad():
        trunk(torch.zeros(1, *shape))
    return trunk
