"""The per-task Jacobian, Gramian and gradient norms of any parameters, for code outside the
balancers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from mtlkit.balancing.engine.gradients import acquire, check_shared
from mtlkit.balancing.engine.strategy import DEFAULT_ENGINE, Engine
from mtlkit.balancing.types import stack_losses

__all__ = ["task_grad_norms", "task_gramian", "task_jacobian"]


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


def task_grad_norms(
    losses: Sequence[Tensor],
    params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None = None,
    *,
    engine: Engine | None = None,
) -> Tensor:
    """The (K,) norms ``‖∇_θ Lₖ‖`` of the per-task gradients of ``params`` (graph kept).

    What :attr:`~mtlkit.balancing.types.Need.GRAD_NORMS` methods read; pass only the parameters
    the method looks at (e.g. GradNorm's last shared layer) to keep it cheap.
    """
    return torch.linalg.vector_norm(task_jacobian(losses, params, features, engine=engine), dim=1)
