"""What the per-pixel task types share: shape checks, the loss over valid pixels, the pixels a
metric scores, and maps for predictions.

A per-pixel task's head outputs (N, C, H, W) maps; its targets are (N, H, W) (segmentation,
depth; depth also (N, 1, H, W)) or (N, 3, H, W) (normals). Which pixels are valid is read off the
target itself (an ignored class, a depth of 0, a zero normal), as the preprocessed NYUv2 and
Cityscapes sets mark them; the (N,) label mask of the data protocol leaves whole images out.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from mtlkit.tasks._accumulate import check_batch
from mtlkit.tasks.base import Task
from mtlkit.tasks.metrics import higher_is_better


class PixelTask(Task):
    """The base of the per-pixel task types: a map per input, the loss over valid pixels.

    Subclasses are dataclasses with the fields ``name``, ``primary_metric`` and
    ``instance_weights`` (per-image weights); :meth:`pixel_loss` ends their ``loss``.
    """

    per_pixel: ClassVar[bool] = True

    def __post_init__(self) -> None:
        higher_is_better(self.primary_metric)

    def pixel_loss(
        self,
        per_pixel: Tensor,
        valid: Tensor,
        output: Tensor,
        target: Tensor,
        mask: Tensor | None,
        weights: Tensor | None,
    ) -> Tensor:
        """The mean of the (N, H, W) ``per_pixel`` losses over the ``valid`` pixels of the
        labelled images (:func:`pixel_mean`), weighted per image by ``weights`` or else by the
        task's :attr:`instance_weights`."""
        if weights is None and self.instance_weights is not None:
            weights = self.instance_weights(output.detach(), target)
        return pixel_mean(per_pixel, valid, mask, weights)


def check_maps(task: str, output: Tensor, target: Tensor, channels: int) -> None:
    """Refuse outputs that are not (N, ``channels``, H, W) maps the size of the target's."""
    if output.dim() != 4 or output.shape[1] != channels:
        raise ValueError(
            f"task {task!r} predicts per pixel: its head must output (N, {channels}, H, W) maps, "
            f"got {tuple(output.shape)}. Use a dense backbone (e.g. model.backbone: segnet)."
        )
    if target.dim() < 3 or output.shape[0] != target.shape[0]:
        raise ValueError(
            f"task {task!r}: targets must be per-pixel maps, one per output, shaped "
            f"(N, ..., H, W); got {tuple(target.shape)} for outputs {tuple(output.shape)}."
        )
    if target.shape[-2:] != output.shape[-2:]:
        raise ValueError(
            f"task {task!r}: the outputs are {tuple(output.shape[-2:])} maps but the targets "
            f"are {tuple(target.shape[-2:])}: the backbone must keep the input's resolution "
            "and the targets must have it."
        )


def pixel_mean(
    per_pixel: Tensor, valid: Tensor, mask: Tensor | None, weights: Tensor | None
) -> Tensor:
    """The mean of (N, H, W) ``per_pixel`` losses over the valid pixels of the labelled rows,
    each image's pixels weighted by its row weight; 0, still on the graph, when no pixel counts.

    Other pixels contribute exactly nothing, their gradient included (``torch.where``).
    """
    if mask is not None:
        valid = valid & mask[:, None, None]
    weight = valid.to(per_pixel.dtype)
    if weights is not None:
        if weights.shape != per_pixel.shape[:1]:
            raise ValueError(
                f"instance weights must be one per row, shape ({per_pixel.shape[0]},); got "
                f"{tuple(weights.shape)}."
            )
        weight = weight * weights.to(per_pixel.dtype)[:, None, None]
    total = weight.sum()
    loss = (weight * torch.where(valid, per_pixel, 0.0)).sum()
    return loss / torch.where(total > 0, total, 1.0)


def scored_rows(
    output: Tensor, target: Tensor, mask: Tensor | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The detached outputs and targets of the labelled rows (device and mask checked)."""
    check_batch(output, target, mask, device)
    if mask is None:
        return output.detach(), target.detach()
    return output.detach()[mask], target.detach()[mask]


def maps(values: Tensor) -> list[Any]:
    """One numpy array per row of ``values``, for prediction tables and map files."""
    return list(values.detach().cpu().numpy())
