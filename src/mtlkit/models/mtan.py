"""MTAN, the multi-task attention network (Liu et al., CVPR 2019), on any staged trunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import prod

import torch
from torch import Tensor, nn
from torch.nn import functional

from mtlkit.models.dense import is_dense
from mtlkit.models.soft import SoftSharing
from mtlkit.models.stages import check_stage_indices, require_stages

__all__ = ["MTAN", "AttentionBlock"]


def _resize(task: Tensor, like: Tensor) -> Tensor:
    """``task`` features brought to the layout of the stage output ``like``: maps pooled to the
    same height and width, (N, C) vectors broadcast over them, maps averaged into vectors."""
    if like.dim() == 4:
        if task.dim() == 4:
            return functional.adaptive_avg_pool2d(task, like.shape[-2:])
        return task.flatten(1)[:, :, None, None].expand(-1, -1, *like.shape[-2:])
    return task.flatten(2).mean(-1) if task.dim() == 4 else task.flatten(1)


class AttentionBlock(nn.Module):
    """One task's soft attention at one stage: a mask in (0, 1) over the stage's output,
    computed from that output and the task's previous attended features, applied elementwise.

    Two 1×1 convolutions with batch norm (maps) or two linear layers (vectors), as MTAN's
    attention modules.
    """

    def __init__(self, channels: int, previous: int, spatial: bool) -> None:
        super().__init__()
        layer = nn.Conv2d if spatial else nn.Linear
        norm = nn.BatchNorm2d if spatial else nn.BatchNorm1d
        width = channels + previous
        if spatial:
            first, second = layer(width, channels, 1), layer(channels, channels, 1)
        else:
            first, second = layer(width, channels), layer(channels, channels)
        self.mask = nn.Sequential(first, norm(channels), nn.ReLU(), second, nn.Sigmoid())

    def forward(self, shared: Tensor, previous: Tensor | None) -> Tensor:
        flat = shared if shared.dim() == 4 else shared.flatten(1)
        joined = flat if previous is None else torch.cat([flat, _resize(previous, flat)], dim=1)
        return self.mask(joined) * flat


class MTAN(SoftSharing):
    """MTAN: one shared trunk; each task attends to its intermediate features.

    After each chosen stage (and always after the last), task ``k``'s attention block reads the
    stage's output and the task's features from its previous block, and masks the stage's output
    elementwise; task ``k``'s head reads its last masked features.

    Shares: the trunk; each task owns its attention blocks and head. Parameters (seed CNN,
    2 tasks, every stage): 1.4× hard. Step time: one trunk pass plus K attention branches, which
    on the seed CNN work on the full-resolution maps of the first stages (measured 2.0× hard
    with ``ew``, 1.5× with ``upgrad``; fewer ``stages`` cost less).
    The trunk needs stages (:mod:`mtlkit.models.stages`).

    Args:
        trunk: the shared trunk (with ``stages()``).
        heads: task name -> head reading ``trunk.out_features`` features.
        input_shape: the per-sample input shape (the stages' output shapes are read off a dry
            run).
        stages: the stage indices after which the tasks attend (default: every stage); the
            last stage is always attended.
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        input_shape: Sequence[int],
        *,
        stages: Sequence[int] | None = None,
    ) -> None:
        super().__init__(heads)
        chain = require_stages(trunk, "mtan")
        chosen = check_stage_indices(stages, len(chain), "mtan")
        self.attended = sorted({*chosen, len(chain) - 1})
        self.trunk = trunk
        shapes = _stage_shapes(trunk, chain, input_shape)
        self.attention = nn.ModuleDict()
        for task in self.task_names:
            blocks, previous = [], 0
            for s in self.attended:
                shape = shapes[s]
                spatial = len(shape) == 3
                channels = shape[0] if spatial else prod(shape)
                blocks.append(AttentionBlock(channels, previous, spatial))
                previous = channels
            self.attention[task] = nn.ModuleList(blocks)

    def encode_tasks(self, x: Tensor, tasks: Sequence[str]) -> dict[str, Tensor]:
        attended: dict[str, Tensor | None] = dict.fromkeys(tasks)
        blocks = {task: iter(self.attention[task]) for task in tasks}
        for s, stage in enumerate(require_stages(self.trunk, "mtan")):
            x = stage(x)
            if s in self.attended:
                attended = {task: next(blocks[task])(x, attended[task]) for task in tasks}
        if is_dense(self.trunk):  # feature maps stay maps for the per-pixel heads
            return dict(attended)
        return {task: features.flatten(1) for task, features in attended.items()}

    def private_modules(self, task: str) -> list[nn.Module]:
        return [self.attention[task]]


def _stage_shapes(
    trunk: nn.Module, chain: Sequence[nn.Module], input_shape: Sequence[int]
) -> list[tuple[int, ...]]:
    """The per-sample output shape of each stage, from a dry run in eval mode (no statistic
    moves)."""
    was_training = trunk.training
    trunk.eval()
    shapes = []
    with torch.no_grad():
        x = torch.zeros(1, *(int(n) for n in input_shape))
        for stage in chain:
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
    trunk.train(was_training)
    return shapes
