"""Per-task gradients of the shared parameters, and writing an aggregated update into ``.grad``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from mtlkit.balancing.base import BalanceInfo, GradientAggregator, GramianWeighting, stack_losses


def autograd_leaves(roots: Sequence[Tensor]) -> list[Tensor]:
    """Every leaf tensor requiring grad that ``roots`` depend on, in first-seen order."""
    seen: set = set()
    stack = [r.grad_fn for r in roots if r.grad_fn is not None]
    leaves: list[Tensor] = []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.append(variable)
        stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return leaves


def shared_jacobian(losses: Sequence[Tensor], shared: Sequence[Tensor]) -> Tensor:
    """The (K, P) Jacobian of the losses with respect to the flattened shared parameters.

    One backward pass per task through the graph the forward built; the graph is kept alive.
    """
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, shared)
                ]
            )
        )
    return torch.stack(rows)


def accumulate_flat(params: Sequence[Tensor], flat: Tensor) -> None:
    """Add the slices of a flat (P,) vector to the ``.grad`` of each parameter, as backward does."""
    offset = 0
    for p in params:
        n = p.numel()
        chunk = flat[offset : offset + n].view_as(p)
        p.grad = chunk.clone() if p.grad is None else p.grad + chunk
        offset += n


def aggregate_backward(
    aggregator: GradientAggregator,
    losses: Sequence[Tensor],
    shared_params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None = None,
) -> BalanceInfo:
    """Fill ``.grad`` for a gradient aggregator.

    Shared parameters get ``aggregator.aggregate(J)``; every other parameter the losses depend on
    (the task-specific ones) gets the gradient of the sum of the losses, i.e. its own task's
    gradient under hard parameter sharing.
    """
    stacked = stack_losses(losses)
    aggregator._check_num_tasks(stacked.numel())
    shared = [p for p in shared_params if p.requires_grad]
    if not shared:
        raise ValueError("shared_params is empty: pass the parameters that all tasks share.")
    shared_ids = {id(p) for p in shared}
    task_specific = [t for t in autograd_leaves(list(losses)) if id(t) not in shared_ids]
    if task_specific:
        torch.autograd.backward(stacked.sum(), inputs=task_specific, retain_graph=True)
    jacobian = shared_jacobian(list(losses), shared)
    if isinstance(aggregator, GramianWeighting):
        weights = aggregator.weights_from_gramian(jacobian @ jacobian.T)
        direction = weights @ jacobian
        info = BalanceInfo(weights=weights.detach())
    else:
        direction = aggregator.aggregate(jacobian, stacked.detach())
        info = BalanceInfo(weights=None)
    accumulate_flat(shared, direction)
    return info
