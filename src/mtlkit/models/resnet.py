"""A small residual network trunk (He et al. 2016) with configurable width and depth.

``resnet``: a 3×3 stem of ``width`` channels, then one stage per entry of ``blocks`` (that many
basic blocks each; the channels double and the resolution halves from the second stage on),
global average pooling, and the ``(N, width·2^(S-1))`` features. Each stage is one of its
:meth:`ResNet.stages` (the stem goes with the first, the pooling with the last).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtlkit.models.backbones import BACKBONES, _image_shape

__all__ = ["BasicBlock", "ResNet"]


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and a shortcut (a 1×1 projection where the shape
    changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """A small ResNet trunk for images.

    Args:
        in_channels: the input channels.
        width: the channels of the stem and the first stage (doubled at each further stage).
        blocks: the number of basic blocks of each stage, first to last (at least one stage).
    """

    def __init__(
        self, in_channels: int, width: int = 16, blocks: Sequence[int] = (1, 1, 1)
    ) -> None:
        super().__init__()
        depths = [int(n) for n in blocks]
        if not depths or min(depths) < 1:
            raise ValueError(f"blocks must be one or more positive counts, got {list(blocks)}.")
        if int(width) < 1:
            raise ValueError(f"width must be a positive number of channels, got {width}.")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        layers = []
        channels = width
        for index, depth in enumerate(depths):
            out = width * 2**index
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(channels, out, stride)]
            stage += [BasicBlock(out, out, 1) for _ in range(depth - 1)]
            layers.append(nn.Sequential(*stage))
            channels = out
        self.layers = nn.ModuleList(layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = channels

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.pool(x)

    def stages(self) -> list[nn.Module]:
        """Stem and first stage, each further stage, the pooling with the last
        (see :mod:`~mtlkit.models.stages`)."""
        chain = [nn.Sequential(self.stem, self.layers[0]), *self.layers[1:]]
        chain[-1] = nn.Sequential(chain[-1], self.pool)
        return chain


def _resnet(
    input_shape: tuple[int, ...], *, width: int = 16, blocks: Sequence[int] = (1, 1, 1)
) -> ResNet:
    channels, _ = _image_shape("resnet", input_shape)
    return ResNet(channels, width, blocks)


BACKBONES.register("resnet", _resnet)
