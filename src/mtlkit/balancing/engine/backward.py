"""The backward pass of a gradient aggregator: from the K losses to every parameter's ``.grad``.

Three paths, one per kind of method (the balancer classes of :mod:`mtlkit.balancing.base` pick
theirs; the methods are passed in and only their documented methods are called, so this module
does not depend on those classes):

* :func:`jacobian_backward`: the shared parameters get ``method.aggregate(J)``;
* :func:`gramian_backward`: the shared parameters get ``wᵀJ`` with ``w`` read off ``G = J Jᵀ``,
  written one parameter at a time from the materialised J (no further backward pass); G and
  ``wᵀJ`` are computed in float64 (:func:`~mtlkit.balancing.engine.accumulate.wide_gramian`);
* :func:`representation_backward`: Sener & Koltun's MGDA-UB shortcut, ``w`` read off the Gramian
  of the K gradients ``∂Lₖ/∂z`` of the shared representation, then one backward of ``Σₖ wₖLₖ``;
* :func:`weighted_backward`: ``wᵀJ`` for weights already known (reused between two solves, or
  read off a Gramian formed layer by layer, :mod:`~mtlkit.balancing.engine.layers`), by one
  trunk backward where the graph is cut at the features.

In the first two, every other parameter the losses depend on gets the gradient of ``Σₖ Lₖ`` (its
own task's gradient under hard sharing). Gradients add to an existing ``.grad``.

With data-parallel ``replicas`` (:mod:`~mtlkit.balancing.replicas`) every path reads and writes
replica means: J and the other gradients are averaged before the method sees them
(:mod:`~mtlkit.balancing.engine.average`); on the representation, the Gramian is that of the whole
batch's ``∂Lₖ/∂z`` (the replicas' Gramians summed, over N², for a mean loss over N equal slices)
and the gradients of ``Σₖ wₖLₖ`` are averaged. Every replica then writes the same ``.grad``.

Mixed precision: the Jacobian has the shared parameters' dtype (float32) whatever the dtype of
the activations, and the Gramian, the method and the accumulation run with autocast off
(:func:`exact_arithmetic`), so that a call from inside ``torch.autocast`` does not round them to
bfloat16/float16; the gradients ``∂Lₖ/∂z`` of a reduced-precision representation are promoted to
float32 before their Gramian.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import torch
from torch import Tensor, nn

from mtlkit.balancing.engine.accumulate import (
    accumulate,
    accumulate_combination,
    accumulate_extra,
    accumulate_flat,
    wide_gramian,
)
from mtlkit.balancing.engine.average import average_acquired, average_in_place
from mtlkit.balancing.engine.gradients import Gradients, acquire, check_shared, head_pass
from mtlkit.balancing.engine.graph import (
    Split,
    as_features,
    autograd_leaves,
    split_at_features,
    unique,
)
from mtlkit.balancing.engine.strategy import Engine
from mtlkit.balancing.replicas import Replicas
from mtlkit.balancing.types import BalanceInfo

__all__ = [
    "AggregatesJacobian",
    "WeighsGramian",
    "exact_arithmetic",
    "gramian_backward",
    "jacobian_backward",
    "representation_backward",
    "weighted_backward",
]


class AggregatesJacobian(Protocol):
    """A method that maps the (K, P) Jacobian to a (P,) update direction."""

    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor: ...


class WeighsGramian(Protocol):
    """A method that maps the (K, K) Gramian to (K,) weights of the task gradients."""

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor: ...


@contextmanager
def exact_arithmetic(tensor: Tensor) -> Iterator[None]:
    """No gradient recording and no autocast on ``tensor``'s device: the balancing arithmetic
    runs in the dtype of its inputs."""
    with torch.no_grad(), torch.autocast(tensor.device.type, enabled=False):
        yield


def _float32_at_least(tensor: Tensor) -> Tensor:
    """``tensor`` promoted to float32 if its dtype is narrower (bfloat16, float16)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _combined_cotangents(weights: Tensor, gz: Sequence[Tensor]) -> list[Tensor]:
    """``Σₖ wₖ·∂Lₖ/∂z`` for each feature (``gz[i]`` is (K, *zᵢ.shape)), summed in float32 or
    wider and returned in the feature's dtype."""
    with exact_arithmetic(weights):
        sums = []
        for g in gz:
            wide = _float32_at_least(g.flatten(1))
            sums.append(weights.to(wide.dtype) @ wide)
        return [s.reshape(g.shape[1:]).to(g.dtype) for s, g in zip(sums, gz)]


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
    with exact_arithmetic(jacobian):
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
    with exact_arithmetic(jacobian):
        weights = method.weights_from_gramian(wide_gramian(jacobian), stacked.detach())
        _write_combination(shared, weights, grads)
    return BalanceInfo(weights=weights.detach().to(jacobian.dtype))


def _write_combination(shared: list[Tensor], weights: Tensor, grads: Gradients) -> None:
    """Shared parameters get ``wᵀJ``, every other parameter its gradient of ``Σₖ Lₖ``."""
    accumulate_combination(shared, weights, grads.jacobian)
    accumulate_extra(grads)


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
    with exact_arithmetic(stacked):
        flat = [_float32_at_least(g.flatten(1)) for g in gz]
        gramian = sum(g @ g.T for g in flat)
        if replicas is not None:  # the whole batch's ∂L/∂z: each replica's over N (mean loss)
            replicas.mean_(gramian)
            gramian /= replicas.size
        weights = method.weights_from_gramian(gramian, stacked.detach()).detach()
    if split is None:
        leaves = autograd_leaves(list(losses))
        total = (weights.to(stacked.dtype) * stacked).sum()
        pairs = list(zip(leaves, torch.autograd.grad(total, leaves, allow_unused=True)))
    else:
        grad_z = _combined_cotangents(weights, gz)
        trunk = shared + split.trunk_extra
        pairs = list(zip(trunk, torch.autograd.grad(feats, trunk, grad_z, allow_unused=True)))
        pairs += [
            (p, g * weights[k].to(g.dtype))
            for k, task_grads in enumerate(head_grads)
            for p, g in task_grads
        ]
    _write_gradients(pairs, replicas)
    return BalanceInfo(weights=weights)


def _write_gradients(pairs: list[tuple[Tensor, Tensor | None]], replicas: Replicas | None) -> None:
    """Add each gradient of ``pairs`` (parameter, gradient or None) to its parameter's
    ``.grad``, averaged over ``replicas`` first."""
    pairs = [(p, g) for p, g in pairs if g is not None]
    average_in_place([g for _, g in pairs], replicas)
    with torch.no_grad():
        for p, g in pairs:
            accumulate(p, g, owned=True)


def weighted_backward(
    weights: Tensor,
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared_params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None,
    engine: Engine,
    replicas: Replicas | None = None,
) -> BalanceInfo:
    """What :func:`gramian_backward` writes for the given ``weights``: shared parameters get
    ``wᵀJ``, every other parameter the gradient of ``Σₖ Lₖ`` (replica means under ``replicas``).

    Where the graph is cut at ``features`` with no other parameter below them, J is not
    materialised: the heads' pass gives ``∂Lₖ/∂z`` and the heads' own gradients, and one trunk
    backward of ``Σₖ wₖ·∂Lₖ/∂z`` gives ``wᵀJ`` (about ``F + B`` instead of ``F + K·B``).
    Elsewhere J is acquired with ``engine`` and ``wᵀJ`` written from it, or, where the engine
    does not materialise J (``Engine.gramian_path``), the losses are differentiated twice
    through the whole graph: ``Σₖ wₖLₖ`` for the shared parameters, ``Σₖ Lₖ`` for the others.
    """
    shared = check_shared(shared_params)
    if not stacked.requires_grad:
        raise ValueError("none of the losses requires grad.")
    feats = as_features(features)
    split = None if feats is None else split_at_features(losses, feats, {id(p) for p in shared})
    if split is None or not split.used or split.trunk_extra:
        if engine.path_for(len(losses), shared) != "full":
            _weighted_sums(weights, losses, shared, replicas)
            return BalanceInfo(weights=weights)
        shared, grads = _replica_gradients(losses, stacked, shared, features, engine, replicas)
        with exact_arithmetic(grads.jacobian):
            _write_combination(shared, weights, grads)
        return BalanceInfo(weights=weights)
    gz, head_grads, _ = head_pass(losses, split)
    grad_z = _combined_cotangents(weights, gz)
    pairs = list(zip(shared, torch.autograd.grad(feats, shared, grad_z, allow_unused=True)))
    pairs += [(p, g) for task_grads in head_grads for p, g in task_grads]
    _write_gradients(pairs, replicas)
    return BalanceInfo(weights=weights)


def _weighted_sums(
    weights: Tensor, losses: Sequence[Tensor], shared: list[Tensor], replicas: Replicas | None
) -> None:
    """Shared parameters get the gradient of ``Σₖ wₖLₖ`` (``wᵀJ``), every other leaf the losses
    reach that of ``Σₖ Lₖ``: two backward passes through the whole graph, no Jacobian."""
    live = [(w, loss) for w, loss in zip(weights, losses) if loss.requires_grad]
    others = unique(autograd_leaves([loss for _, loss in live]), {id(p) for p in shared})
    weighted = sum(w.to(loss.dtype) * loss for w, loss in live)
    grads = torch.autograd.grad(weighted, shared, retain_graph=bool(others), allow_unused=True)
    pairs = list(zip(shared, grads))
    if others:
        plain = torch.autograd.grad(sum(loss for _, loss in live), others, allow_unused=True)
        pairs += list(zip(others, plain))
    _write_gradients(pairs, replicas)
