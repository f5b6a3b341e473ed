"""Mini-batches sliced from a :class:`Split` held in memory, ready for data-parallel training."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from mtlkit.data.errors import DataError
from mtlkit.data.types import Batch, Split

_SEED_STRIDE = 1_000_003


class TensorBatches:
    """Iterate over a split in mini-batches, each gathered with one ``index_select`` per tensor.

    The epoch's order is a pure function of ``(seed, epoch)``: a permutation drawn from a
    ``torch.Generator`` seeded with ``seed * 1_000_003 + epoch`` (the identity without
    ``shuffle``). With ``world_size`` > 1, rank ``r`` takes every ``world_size``-th sample of
    that order from position ``r`` (as ``DistributedSampler`` does), so that the shards are
    disjoint and step i of the N ranks together sees exactly the samples of step i of one process
    at batch size N·``batch_size``. With ``even_shards`` (for training) the
    ``len(split) % world_size`` samples at the end of the order are left out of the epoch, so that
    every rank has as many samples and runs as many steps; without (for evaluation) every sample
    is served once, and shards differ by at most one sample. As with ``DistributedSampler``,
    call :meth:`set_epoch` before each epoch.

    Args:
        split: the data.
        batch_size: samples per batch.
        shuffle: draw a new order each epoch; otherwise keep the split's order.
        seed: the seed of the orders; must be equal on every rank.
        drop_last: drop the last batch of a shard if it is smaller than ``batch_size``.
        rank: this process's rank, in ``0 .. world_size - 1``.
        world_size: the number of processes sharing each epoch.
        even_shards: leave out the samples that would make the shards unequal.
        device: move each batch there (``None``: leave it where the split is).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        check_batching("TensorBatches", batch_size, rank, world_size)
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.even_shards = even_shards
        self.device = device
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration follows."""
        self.epoch = epoch

    @property
    def shard_size(self) -> int:
        """The number of samples this rank sees per epoch."""
        if self.even_shards:
            return len(self.split) // self.world_size
        return len(range(self.rank, len(self.split), self.world_size))

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in iteration order (int64)."""
        size = len(self.split)
        if self.shuffle:
            generator = torch.Generator().manual_seed(
                (self.seed * _SEED_STRIDE + self.epoch) % 2**63
            )
            order = torch.randperm(size, generator=generator)
        else:
            order = torch.arange(size)
        return shard(order, self.rank, self.world_size, even=self.even_shards)

    def __len__(self) -> int:
        full, rest = divmod(self.shard_size, self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def __iter__(self) -> Iterator[Batch]:
        indices = self.indices().to(self.split.inputs.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = indices[start : start + self.batch_size]
            batch = Batch(
                self.split.inputs.index_select(0, index),
                {task: take(y, index) for task, y in self.split.targets.items()},
                {task: take(m, index) for task, m in self.split.masks.items()},
                {task: take(w, index) for task, w in self.split.weights.items()},
            )
            yield batch if self.device is None else batch.to(self.device)


def check_batching(loader: str, batch_size: int, rank: int, world_size: int) -> None:
    """Refuse a batch size below 1, or a rank outside ``0 .. world_size - 1``."""
    if batch_size < 1:
        raise DataError(f"{loader}: batch_size must be ≥ 1, got {batch_size}.")
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(
            f"{loader}: need 0 ≤ rank < world_size, got rank={rank}, world_size={world_size}."
        )


def shard(order: torch.Tensor, rank: int, world_size: int, *, even: bool = True) -> torch.Tensor:
    """Rank ``rank``'s part of ``order``: every ``world_size``-th entry from position ``rank``
    (as ``DistributedSampler`` does), so that position i of the N parts together is positions
    N·i .. N·i + N - 1 of ``order``. With ``even`` the ``len(order) % world_size`` last entries
    are in no part, so that every part has as many."""
    part = order[rank::world_size]
    return part[: len(order) // world_size] if even else part


def take(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The rows ``index`` of ``tensor``, wherever each of the two lives."""
    return tensor.index_select(0, index.to(tensor.device))
