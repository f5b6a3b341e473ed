"""Dense trunks: networks whose features keep the input's resolution, for per-pixel tasks.

A dense trunk maps (N, C, H, W) images to (N, D, H, W) feature maps (``out_features`` is D) and
says so with a true ``dense`` attribute (:func:`is_dense`): its heads are then convolutional
(:func:`mtlkit.models.heads.task_head`), and the sharing architectures keep its maps as maps
(MTAN attends over them, cross-stitch mixes them, the experts of MMoE and its family are 1×1
convolutions over them).

:class:`SegNet` is the encoder-decoder of the NYUv2 literature (Badrinarayanan et al. 2017; the
trunk of MTAN's experiments), scaled down: each encoder stage halves the resolution and doubles
the channels, each decoder stage undoes one, and every stage is one of ``stages()``, so that
MTAN and cross-stitch work on it.
"""

from __future__ import annotations

from torch import Tensor, nn

from mtlkit.models.backbones import BACKBONES, _image_shape, _normalised

__all__ = ["SegNet", "is_dense"]


def is_dense(trunk: nn.Module) -> bool:
    """Whether ``trunk`` gives feature maps at the input's resolution (a dense trunk)."""
    return bool(getattr(trunk, "dense", False))


def _block(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    """A 3×3 convolution (with batch norm when asked) and a ReLU."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    return [*_normalised(conv, batch_norm), nn.ReLU()]


class SegNet(nn.Module):
    """A small SegNet-style encoder-decoder: full-resolution feature maps of ``width`` channels.

    Stages, first to last: a stem at full resolution (``width`` channels); ``depth`` encoder
    stages (2×2 max-pool, then a convolution doubling the channels); ``depth`` decoder stages
    (2× nearest upsampling, then a convolution halving them). Each convolution is 3×3, followed
    by batch norm (``batch_norm``) and a ReLU.

    Args:
        in_channels: the images' channels.
        image_size: (height, width), each divisible by ``2**depth``.
        width: the channels of the stem and of the output (≥ 1).
        depth: the number of encoder (and decoder) stages (≥ 1).
        batch_norm: normalise every convolution's outputs over the batch.
    """

    dense = True

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        *,
        width: int = 16,
        depth: int = 2,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if int(width) < 1 or int(depth) < 1:
            raise ValueError(f"segnet needs width ≥ 1 and depth ≥ 1, got {width} and {depth}.")
        factor = 2**depth
        if any(side % factor for side in image_size):
            raise ValueError(
                f"segnet with depth {depth} needs image sides divisible by {factor}, got "
                f"{image_size[0]}×{image_size[1]}: pad or crop the images, or lower the depth."
            )
        channels = [width * 2**level for level in range(depth + 1)]
        chain = [nn.Sequential(*_block(in_channels, width, batch_norm))]
        for low, high in zip(channels, channels[1:]):
            chain.append(nn.Sequential(nn.MaxPool2d(2), *_block(low, high, batch_norm)))
        for high, low in zip(channels[::-1], channels[-2::-1]):
            upsample = nn.Upsample(scale_factor=2, mode="nearest")
            chain.append(nn.Sequential(upsample, *_block(high, low, batch_norm)))
        self.chain = nn.ModuleList(chain)
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.chain:
            x = stage(x)
        return x

    def stages(self) -> list[nn.Module]:
        """The stem, each encoder stage and each decoder stage (:mod:`~mtlkit.models.stages`)."""
        return list(self.chain)


def _segnet(
    input_shape: tuple[int, ...], *, width: int = 16, depth: int = 2, batch_norm: bool = True
) -> SegNet:
    channels, size = _image_shape("segnet", input_shape)
    return SegNet(channels, size, width=width, depth=depth, batch_norm=batch_norm)


BACKBONES.register("segnet", _segnet)
