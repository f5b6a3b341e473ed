"""The small types every part of balancing shares: :class:`Need`, :class:`BalanceInfo`,
:func:`stack_losses`.

This module imports nothing else of ``mtlkit``, so that the balancers (``base``), the engine and
the methods can all depend on it without depending on one another.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["BalanceInfo", "Need", "stack_losses"]


class Need(enum.IntEnum):
    """What a method must see to decide the update; ordered from cheapest to dearest.

    Compare by name or order (``method.needs >= Need.GRAMIAN``), not by value.
    """

    LOSSES = 0
    """The loss values (and the method's own state) only: one backward pass of one scalar."""
    GRAD_NORMS = 1
    """The K norms of the per-task gradients of (some of) the shared parameters, e.g. GradNorm's
    last shared layer, which it reads itself along the short path from each loss to that layer;
    :func:`mtlkit.balancing.engine.jacobian.task_grad_norms` gives them for any parameter set."""
    GRAMIAN = 2
    """The K×K Gramian ``J Jᵀ`` of the per-task gradients of the shared parameters."""
    JACOBIAN = 3
    """The whole K×P Jacobian of the shared parameters."""


@dataclass
class BalanceInfo:
    """What a balancer did in one step, for logging.

    Attributes:
        weights: the (K,) task weights actually applied, detached; ``None`` where the method's
            update is not a weighted sum of the task gradients.
        extras: further scalars worth logging (for example a method's internal temperature).
    """

    weights: Tensor | None
    extras: dict[str, float] = field(default_factory=dict)


def stack_losses(losses: Sequence[Tensor]) -> Tensor:
    """Stack K scalar losses into a (K,) tensor, refusing anything that is not a scalar."""
    if len(losses) == 0:
        raise ValueError("losses is empty: pass one scalar loss per task.")
    for k, loss in enumerate(losses):
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(
                f"losses[{k}] must be a scalar tensor, got {shape}: reduce each task's loss "
                "to a scalar (e.g. .mean()) before balancing."
            )
    return torch.stack(list(losses))
