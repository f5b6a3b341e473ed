"""Mini-batches for multi-input data: every step draws one batch from each task's own split.

An epoch is a number of steps, set by a policy:

* ``"longest"`` (the default): as many steps as the task with the most batches needs for one pass
  over its samples. That task sees each of its samples exactly once; a task with fewer batches
  is *recycled*: it starts a new pass, freshly shuffled, whenever it runs out, so it sees each of
  its samples at least once per epoch (some twice). Every epoch starts every task on a new pass.
* ``"shortest"``: as many steps as the task with the fewest batches needs for one pass.
* an integer N: N steps.

Under ``"shortest"`` and N steps no task is cut short: each task reads its own endless stream of
passes (each pass a fresh permutation of its samples, visiting each once) and every epoch carries
on where the previous one stopped, so a longer task completes its pass in the following epochs.

How tasks are mixed within a step (``mixing``): ``"equal"`` (the default) draws ``batch_size``
samples of every task; ``"proportional"`` shares ``K · batch_size`` samples out in proportion to
the tasks' sizes (at least one each), so that all tasks finish a pass in about the same number of
steps and none is recycled much.

Like :class:`~mtlkit.data.TensorBatches`, the order is a pure function of ``(seed, epoch)``
(:meth:`MultiInputBatches.set_epoch`), and ``rank``/``world_size`` shard every pass into equal,
disjoint, contiguous parts, so that every rank runs the same number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import torch

from mtlkit.data.errors import DataError
from mtlkit.data.loader import TensorBatches, check_batching, shard, take
from mtlkit.data.types import Batch, Split

EPOCH_POLICIES = ("longest", "shortest")
"""The named epoch policies; an integer number of steps is the third kind."""
MIXINGS = ("equal", "proportional")
"""How a step's samples are shared out among the tasks."""

EpochPolicy = str | int
"""``"longest"``, ``"shortest"`` or a positive number of steps."""


def check_epoch_policy(epoch: EpochPolicy) -> EpochPolicy:
    """``epoch`` if it is a valid policy, else a :class:`DataError` saying what is allowed."""
    if isinstance(epoch, bool) or not (
        epoch in EPOCH_POLICIES or (isinstance(epoch, int) and epoch >= 1)
    ):
        raise DataError(
            f"epoch policy {epoch!r}: use 'longest', 'shortest' or a positive number of steps."
        )
    return epoch


class MultiInputBatches:
    """Iterate over per-task splits, one :class:`Batch` per step holding a batch of every task.

    Each batch's ``inputs`` is a dict ``task -> (Bₖ, ...)`` with the targets and masks of task k
    aligned with its inputs. See the module's documentation for the epoch policy and mixing.

    Args:
        splits: task name -> that task's split (holding that task's targets).
        batch_size: samples per task and step (``mixing="equal"``), or the mean over tasks.
        epoch: ``"longest"``, ``"shortest"`` or a number of steps.
        mixing: ``"equal"`` or ``"proportional"``.
        shuffle: a fresh permutation for every pass; otherwise every pass keeps the split's order.
        seed: the seed of the orders; must be equal on every rank.
        rank: this process's rank, in ``0 .. world_size - 1``.
        world_size: the number of processes sharing each pass.
        device: move each batch there (``None``: leave it where the splits are).
    """

    def __init__(
        self,
        splits: Mapping[str, Split],
        batch_size: int,
        *,
        epoch: EpochPolicy = "longest",
        mixing: str = "equal",
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ) -> None:
        if not splits:
            raise DataError("MultiInputBatches: no task split given; pass one split per task.")
        check_batching("MultiInputBatches", batch_size, rank, world_size)
        if mixing not in MIXINGS:
            raise DataError(f"mixing {mixing!r}: use one of {', '.join(MIXINGS)}.")
        self.splits = dict(splits)
        self.shard_sizes = {task: len(split) // world_size for task, split in self.splits.items()}
        empty = [task for task, size in self.shard_sizes.items() if size == 0]
        if empty:
            raise DataError(
                f"MultiInputBatches: task(s) {', '.join(map(repr, empty))} have fewer samples "
                f"than the {world_size} processes; every task needs at least one per process."
            )
        self.policy = check_epoch_policy(epoch)
        self.batch_sizes = self._batch_sizes(batch_size, mixing)
        """Task name -> its samples per step."""
        self.shuffle, self.seed, self.device = shuffle, seed, device
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.passes = {
            task: math.ceil(size / self.batch_sizes[task])
            for task, size in self.shard_sizes.items()
        }
        """Task name -> the number of steps one pass over its shard takes."""

    def _batch_sizes(self, batch_size: int, mixing: str) -> dict[str, int]:
        if mixing == "equal":
            return dict.fromkeys(self.splits, batch_size)
        total = sum(self.shard_sizes.values())
        share = len(self.splits) * batch_size / total
        return {task: max(1, round(size * share)) for task, size in self.shard_sizes.items()}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration follows."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Steps per epoch."""
        if self.policy == "longest":
            return max(self.passes.values())
        if self.policy == "shortest":
            return min(self.passes.values())
        return int(self.policy)

    def indices(self) -> dict[str, torch.Tensor]:
        """Per task, its sample indices for the current epoch in iteration order (int64)."""
        steps = len(self)
        out = {}
        for number, (task, size) in enumerate(self.shard_sizes.items()):
            wanted = steps * self.batch_sizes[task]
            if self.policy == "longest":
                # every epoch starts each task on a new pass; the longest task ends with its pass
                length = size if self.passes[task] == steps else wanted
                out[task] = self._stream(task, (number, self.epoch), 0, length)
            else:
                out[task] = self._stream(task, (number,), self.epoch * wanted, wanted)
        return out

    def _stream(self, task: str, key: tuple[int, ...], start: int, length: int) -> torch.Tensor:
        """Positions ``start .. start + length`` of ``task``'s stream of passes over its shard;
        ``key`` identifies the stream among those the seed draws."""
        size = self.shard_sizes[task]
        first, last = start // size, (start + length - 1) // size
        passes = [
            shard(self._order(task, (*key, index)), self.rank, self.world_size)
            for index in range(first, last + 1)
        ]
        offset = start - first * size
        return torch.cat(passes)[offset : offset + length]

    def _order(self, task: str, key: tuple[int, ...]) -> torch.Tensor:
        """One pass over the whole split: a permutation drawn from ``(seed, *key)``."""
        size = len(self.splits[task])
        if not self.shuffle:
            return torch.arange(size)
        state = np.random.SeedSequence([self.seed, *key]).generate_state(1, dtype=np.uint64)
        return torch.randperm(size, generator=torch.Generator().manual_seed(int(state[0])))

    def __iter__(self) -> Iterator[Batch]:
        orders = {
            task: order.to(self.splits[task].inputs.device)
            for task, order in self.indices().items()
        }
        for step in range(len(self)):
            inputs, targets, masks, weights = {}, {}, {}, {}
            for task, split in self.splits.items():
                size = self.batch_sizes[task]
                index = orders[task][step * size : (step + 1) * size]
                inputs[task] = split.inputs.index_select(0, index)
                targets.update({t: take(y, index) for t, y in split.targets.items()})
                masks.update({t: take(m, index) for t, m in split.masks.items()})
                weights.update({t: take(w, index) for t, w in split.weights.items()})
            batch = Batch(inputs, targets, masks, weights)
            yield batch if self.device is None else batch.to(self.device)


class TaskByTaskBatches:
    """Every task's own split in order, task after task, for evaluation: each batch holds one
    task's inputs (``inputs = {task: x}``) and targets.

    Args:
        splits: task name -> that task's split.
        batch_size: samples per batch.
        rank: this process's rank, in ``0 .. world_size - 1``: it takes every ``world_size``-th
            sample of each split, so that the processes together serve each sample once.
        world_size: the number of processes sharing the evaluation.
        device: move each batch there (``None``: leave it where the splits are).
    """

    def __init__(
        self,
        splits: Mapping[str, Split],
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ) -> None:
        self.loaders = {
            task: TensorBatches(
                split,
                batch_size,
                rank=rank,
                world_size=world_size,
                even_shards=False,
                device=device,
            )
            for task, split in splits.items()
        }

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders.values())

    def __iter__(self) -> Iterator[Batch]:
        for task, loader in self.loaders.items():
            for batch in loader:
                yield Batch({task: batch.inputs}, batch.targets, batch.masks, batch.weights)
