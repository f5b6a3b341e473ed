"""Data-parallel replicas as a balancer sees them: :class:`Replicas` and the replica-mean losses.

Under data parallelism (torchrun, N processes) every replica holds its own slice of the batch.
For every replica to apply the same update as one process on the whole batch, a balancer must
decide from cross-replica quantities, never from its local ones: the mean of each task's loss,
the mean Jacobian (the mean of the per-replica gradients of a mean loss is the gradient of the
whole batch's mean loss when the slices are equal-sized), and so on. The training loop hands a
balancer a :class:`Replicas` (``balancer.replicas = ...``); the balancer knows nothing else of
processes. This module imports nothing else of ``mtlkit``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = ["Replicas", "replica_mean_values"]


class Replicas(Protocol):
    """The data-parallel replicas one balancing step is part of.

    Every replica calls :meth:`mean_` with tensors of the same shapes, in the same order (a
    collective operation, like ``torch.distributed.all_reduce``).
    """

    @property
    def size(self) -> int:
        """The number of replicas."""

    def mean_(self, tensor: Tensor) -> None:
        """Replace ``tensor`` in place by its element-wise mean over the replicas."""


class _ValuesOf(torch.autograd.Function):
    """``values`` in the forward pass, the gradient passed on to ``local`` in the backward."""

    @staticmethod
    def forward(ctx: Any, local: Tensor, values: Tensor) -> Tensor:
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def replica_mean_values(stacked: Tensor, replicas: Replicas | None) -> Tensor:
    """The (K,) losses with the values of their replica means, differentiable into the local ones.

    A balancer that computes anything from the values (weights, its state) then computes the same
    on every replica, and the gradient that reaches each replica's graph is that of the local
    losses, evaluated at the common values: averaged over the replicas (by DDP or the engine),
    it is the gradient one process would compute on the whole batch. The values are exactly the
    replica means, bit for bit on every replica (``local + (mean − local)`` would not be).
    Without ``replicas``, ``stacked`` itself.
    """
    if replicas is None:
        return stacked
    values = stacked.detach().clone()
    replicas.mean_(values)
    return _ValuesOf.apply(stacked, values) if stacked.requires_grad else values
