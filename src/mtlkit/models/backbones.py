"""Shared trunks: each maps an image batch (N, C, H, W) to a feature batch (N, D)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SeedCNN(nn.Sequential):
    """The small CNN of the seed experiments: conv 32 → pool → conv 64 → pool → fc 256."""

    def __init__(self, in_channels: int, image_size: tuple[int, int]) -> None:
        h, w = image_size
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
    """A two-layer perceptron on flattened images (a fast trunk for tests and tiny data)."""

    def __init__(self, in_channels: int, image_size: tuple[int, int], hidden: int = 128) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_channels * image_size[0] * image_size[1], hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.out_features = hidden


BACKBONES: dict[str, Callable[[int, tuple[int, int]], nn.Module]] = {
    "cnn": SeedCNN,
    "lenet": LeNet,
    "mlp": MLP,
}


def create_backbone(name: str, in_channels: int, image_size: tuple[int, int]) -> nn.Module:
    """Create the trunk registered as ``name``; it has an ``out_features`` attribute."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}.")
    trunk = BACKBONES[name](in_channels, image_size)
    with torch.no_grad():
        trunk(torch.zeros(1, in_channels, *image_size))  # fail here, not mid-training, on bad sizes
    return trunk
