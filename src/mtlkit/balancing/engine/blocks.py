"""The bounded-memory path of a Gramian weighting: ``G = J Jᵀ`` block by block, then one
backward of ``Σₖ wₖLₖ``.

The K×P Jacobian of a large trunk at many tasks does not fit in memory (K = 100 tasks on a
ResNet-18 trunk of 11 M float32 parameters: 4.4 GB). Its Gramian does not need all of it at once:
``G = Σ_b J_b J_bᵀ`` over blocks b of the shared parameters. :func:`parameter_blocks` cuts the
parameters into blocks whose K rows fit in ``engine.memory_budget``; for each block the engine
acquires only that block's rows (K backward passes that stop at the block) and adds their
Gramian (in float64) to G. The method reads its weights w off G as on the full path, and the
update ``wᵀJ`` is written by :func:`~mtlkit.balancing.engine.backward.weighted_backward`, one
backward of ``Σₖ wₖ·∂Lₖ/∂z`` through the trunk (or of ``Σₖ wₖLₖ`` where the graph is not cut at
the features) — no J at all.

Cost against the full path: K backward passes per block instead of K in all (each stopping at its
block and computing no other parameter's gradient, so the blocks nearer the output cost less),
plus one for the update; memory: one block's
K rows plus what a plain backward needs. The result equals the full path's up to float rounding
(G summed in another order; ``wᵀJ`` summed by autograd in float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.engine.accumulate import wide_gramian
from mtlkit.balancing.engine.backward import WeighsGramian, exact_arithmetic, weighted_backward
from mtlkit.balancing.engine.gradients import acquire
from mtlkit.balancing.engine.strategy import Engine
from mtlkit.balancing.replicas import Replicas
from mtlkit.balancing.types import BalanceInfo

__all__ = ["blocked_gramian_backward", "parameter_blocks"]


def parameter_blocks(shared: Sequence[Tensor], num_tasks: int, budget: int) -> list[list[Tensor]]:
    """Consecutive groups of ``shared`` whose K Jacobian rows take at most ``budget`` bytes each;
    a parameter whose rows alone exceed it forms a block of its own."""
    blocks: list[list[Tensor]] = []
    current: list[Tensor] = []
    size = 0
    for p in shared:
        cost = num_tasks * p.numel() * p.element_size()
        if current and size + cost > budget:
            blocks.append(current)
            current, size = [], 0
        current.append(p)
        size += cost
    blocks.append(current)
    return blocks


def blocked_gramian_backward(
    method: WeighsGramian,
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    features: Tensor | Sequence[Tensor] | None,
    engine: Engine,
    replicas: Replicas | None = None,
) -> BalanceInfo:
    """What :func:`~mtlkit.balancing.engine.backward.gramian_backward` writes, without holding
    more than one block of J (see the module's docstring)."""
    gramian: Tensor | None = None
    dtype = stacked.dtype
    for block in parameter_blocks(shared, len(losses), engine.memory_budget):
        others = [p for p in shared if all(p is not q for q in block)]
        grads = acquire(losses, stacked, block, features, engine, True, skip=others)
        if replicas is not None:
            with torch.no_grad():
                replicas.mean_(grads.jacobian)
        gramian = wide_gramian(grads.jacobian, into=gramian)
        dtype = grads.jacobian.dtype
        del grads
    assert gramian is not None  # shared is not empty (checked by the caller)
    with exact_arithmetic(stacked):
        weights = method.weights_from_gramian(gramian, stacked.detach()).detach()
    weighted_backward(weights, losses, stacked, shared, features, engine, replicas)
    return BalanceInfo(weights=weights.to(dtype))
