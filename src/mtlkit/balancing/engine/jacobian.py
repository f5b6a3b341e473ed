"""The per-task Jacobian and Gramian of any parameters, for code outside the balancers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import Tensor, nn

from mtlkit.balancing.engine.gradients import acquire, check_shared
from mtlkit.balancing.engine.strategy import DEFAULT_ENGINE, Engine
from mtlkit.balancing.types import stack_losses

__all__ = ["task_gramian", "task_jacobian"]


def task_jacobian(
    losses: Sequence[Tensor],
    params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None = None,
    *,
    engine: Engine | None = None,
) -> Tensor:
    """The (K, P) Jacobian of the K losses with respect to the flattened ``params``.

    The graph is kept (``retain_graph``); nothing is written to ``.grad``.
    """
    stacked = stack_losses(losses)
    shared = check_shared(params)
    grads = acquire(list(losses), stacked, shared, features, engine or DEFAULT_ENGINE, True)
    return grads.jacobian


def task_gramian(
    losses: Sequence[Tensor],
    params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None = None,
    *,
    engine: Engine | None = None,
) -> Tensor:
    """The (K, K) Gramian ``J Jᵀ`` of the per-task gradients of ``params`` (graph kept)."""
    jacobian = task_jacobian(losses, params, features, engine=engine)
    return jacobian @ jacobian.T
