"""The backward pass of a gradient aggregator: from the K losses to every parameter's ``.grad``.

Three paths, one per kind of method (the balancer classes of :mod:`mtlkit.balancing.base` pick
theirs; the methods are passed in and only their documented methods are called, so this module
does not depend on those classes):

* :func:`jacobian_backward`: the shared parameters get ``method.aggregate(J)``;
* :func:`gramian_backward`: the shared parameters get ``wᵀJ`` with ``w`` read off ``G = J Jᵀ``,
  written one parameter at a time from the materialised J (no further backward pass);
* :func:`representation_backward`: Sener & Koltun's MGDA-UB shortcut, ``w`` read off the Gramian
  of the K gradients ``∂Lₖ/∂z`` of the shared representation, then one backward of ``Σₖ wₖLₖ``.

In the first two, every other parameter the losses depend on gets the gradient of ``Σₖ Lₖ`` (its
own task's gradient under hard sharing). Gradients add to an existing ``.grad``.

With data-parallel ``replicas`` (:mod:`~mtlkit.balancing.replicas`) every path reads and writes
replica means: J and the other gradients are averaged before the method sees them
(:mod:`~mtlkit.balancing.engine.average`); on the representation, the Gramian is that of the whole
batch's ``∂Lₖ/∂z`` (the replicas' Gramians summed, over N², for a mean loss over N equal slices)
and the gradients of ``Σₖ wₖLₖ`` are averaged. Every replica then writes the same ``.grad``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

from mtlkit.balancing.engine.accumulate import (
    accumulate,
    accumulate_combination,
    accumulate_extra,
    accumulate_flat,
)
from mtlkit.balancing.engine.average import average_acquired, average_in_place
from mtlkit.balancing.engine.gradients import Gradients, acquire, check_shared, head_pass
from mtlkit.balancing.engine.graph import Split, as_features, autograd_leaves, split_at_features
from mtlkit.balancing.engine.strategy import Engine
from mtlkit.balancing.replicas import Replicas
from mtlkit.balancing.types import BalanceInfo

__all__ = [
    "AggregatesJacobian",
    "WeighsGramian",
    "gramian_backward",
    "jacobian_backward",
    "representation_backward",
]


class AggregatesJacobian(Protocol):
    """A method that maps the (K, P) Jacobian to a (P,) update direction."""

    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor: ...


class WeighsGramian(Protocol):
    """A method that maps the (K, K) Gramian to (K,) weights of the task gradients."""

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor: ...


def jacobian_backward(
    method: AggregatesJacobian,
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared_params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None,
    engine: Engine,
    replicas: Replicas | None = None,
) -> BalanceInfo:
    """Shared parameters get ``method.aggregate(J, losses)``; the update is no weighting.

    ``stacked`` is the (K,) stack of ``losses`` (:func:`~mtlkit.balancing.types.stack_losses`;
    under ``replicas``, with the values of their replica means).
    """
    shared, grads = _replica_gradients(losses, stacked, shared_params, features, engine, replicas)
    jacobian = grads.jacobian
    with torch.no_grad():
        direction = method.aggregate(jacobian, stacked.detach())
        if direction.shape != (jacobian.shape[1],):
            raise ValueError(
                f"{type(method).__name__}.aggregate returned shape {tuple(direction.shape)}; "
                f"expected ({jacobian.shape[1]},), one entry per shared parameter coordinate."
            )
        accumulate_flat(shared, direction)
        accumulate_extra(grads)
    return BalanceInfo(weights=None)


def gramian_backward(
    method: WeighsGramian,
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared_params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None,
    engine: Engine,
    replicas: Replicas | None = None,
) -> BalanceInfo:
    """Shared parameters get ``wᵀJ`` with ``w = method.weights_from_gramian(J Jᵀ, losses)``."""
    shared, grads = _replica_gradients(losses, stacked, shared_params, features, engine, replicas)
    jacobian = grads.jacobian
    with torch.no_grad():
        weights = method.weights_from_gramian(jacobian @ jacobian.T, stacked.detach())
        accumulate_combination(shared, weights, jacobian)
        accumulate_extra(grads)
    return BalanceInfo(weights=weights.detach())


def _replica_gradients(
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared_params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None,
    engine: Engine,
    replicas: Replicas | None,
) -> tuple[list[Tensor], Gradients]:
    """The checked shared parameters, and the per-task gradients (J and the other parameters'
    gradients) acquired by ``engine`` and averaged over ``replicas``."""
    shared = check_shared(shared_params)
    grads = acquire(losses, stacked, shared, features, engine, retain_graph=False)
    average_acquired(grads, replicas)
    return shared, grads


def representation_backward(
    method: WeighsGramian,
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared_params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None,
    replicas: Replicas | None = None,
) -> BalanceInfo:
    """Sener & Koltun's MGDA-UB shortcut: weights from the Gramian of ``∂Lₖ/∂z``, then one
    backward of ``Σₖ wₖLₖ`` through the whole network (heads included).

    Where the graph is cut at ``features`` the heads' gradients from the pass that gave
    ``∂Lₖ/∂z`` are reused (weighted) and only the trunk is differentiated again; otherwise (a
    loss reaches a shared parameter around ``z``) the weighted sum goes back through everything.
    """
    name = getattr(method, "method_name", type(method).__name__)
    shared = check_shared(shared_params)
    if features is None:
        raise ValueError(
            f"{name} works on the shared representation: pass features=model.encode(x) (the "
            "tensor the task heads read) to balancer.backward."
        )
    feats = as_features(features)
    if feats is None:
        raise ValueError(
            f"{name}: the features do not require grad; pass the attached output of "
            "model.encode(x), not a detached copy."
        )
    if not stacked.requires_grad:
        raise ValueError("none of the losses requires grad.")
    split = split_at_features(losses, feats, {id(p) for p in shared})
    if split is None:
        # a loss reaches a shared parameter around the features: heads pass for ∂Lₖ/∂z only
        gz, _, _ = head_pass(losses, Split(feats, [[] for _ in losses], [], True))
    else:
        if not split.used:
            raise ValueError(
                f"{name}: no loss depends on the given features; pass the tensor the task heads "
                "read (model.encode(x))."
            )
        gz, head_grads, _ = head_pass(losses, split)
    with torch.no_grad():
        gramian = sum(g.flatten(1) @ g.flatten(1).T for g in gz)
        if replicas is not None:  # the whole batch's ∂L/∂z: each replica's over N (mean loss)
            replicas.mean_(gramian)
            gramian /= replicas.size
        weights = method.weights_from_gramian(gramian, stacked.detach()).detach()
    if split is None:
        leaves = autograd_leaves(list(losses))
        total = (weights.to(stacked.dtype) * stacked).sum()
        pairs = list(zip(leaves, torch.autograd.grad(total, leaves, allow_unused=True)))
    else:
        with torch.no_grad():
            grad_z = [torch.tensordot(weights.to(g.dtype), g, dims=1) for g in gz]
        trunk = shared + split.trunk_extra
        pairs = list(zip(trunk, torch.autograd.grad(feats, trunk, grad_z, allow_unused=True)))
        pairs += [
            (p, g * weights[k].to(g.dtype))
            for k, task_grads in enumerate(head_grads)
            for p, g in task_grads
        ]
    pairs = [(p, g) for p, g in pairs if g is not None]
    average_in_place([g for _, g in pairs], replicas)
    with torch.no_grad():
        for p, g in pairs:
            accumulate(p, g, owned=True)
    return BalanceInfo(weights=weights)
