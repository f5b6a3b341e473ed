"""The small types every part of balancing shares: :class:`Need`, :class:`BalanceInfo`,
:func:`stack_losses`.

This module imports nothing else of ``mtlkit``, so that the balancers (``base``), the engine and
the methods can all depend on it without depending on one another.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BalanceInfo", "Need", "stack_losses"]


class Need(enum.IntEnum):
    """What a method reads to decide the update, and so what a step costs; cheapest first.

    In the costs below F is the forward pass, B one backward pass through the network and K the
    number of tasks. Compare by name or order (``method.needs >= Need.GRAMIAN``), not by value.
    """

    LOSSES = 0
    """The loss values (and the method's own state): the method back-propagates one scalar, about
    ``F + B``. A loss weighting may read more along short paths of its own and says so in its
    docstring (GradNorm: K backward passes from the losses to the last shared layer only)."""
    GRAMIAN = 1
    """The K×K Gramian ``G = J Jᵀ`` of the per-task gradients of the shared parameters. The engine
    materialises the K×P Jacobian J to get it (K backward passes through the trunk with the
    ``"loop"`` strategy, one vmapped backward with ``"batched"``; K×P memory), about ``F + K·B``,
    and writes the update ``wᵀJ`` from that same J without a further backward pass. A method on
    the shared representation (``on_features``, MGDA-UB) needs only the K gradients ``∂Lₖ/∂z``
    (a pass through the heads) and one backward pass, about ``F + B``."""
    JACOBIAN = 2
    """The whole K×P Jacobian of the shared parameters: the same cost as :attr:`GRAMIAN` (the
    engine obtains J either way); the method maps J itself to an update direction."""


@dataclass
class BalanceInfo:
    """What a balancer did in one step, for logging.

    Attributes:
        weights: the (K,) task weights actually applied, detached; ``None`` where the method's
            update is not a weighted sum of the task gradients.
    """

    weights: Tensor | None


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
