"""Acquiring the per-task gradients: the K×P Jacobian of the shared parameters, from one graph.

Two graph paths (:func:`acquire` picks one) times two strategies (:class:`Engine`):

* whole graph: each loss is differentiated through the whole network (no ``features``, or the
  graph is not cut at them);
* split graph: one backward through each task's head gives ``∂Lₖ/∂z`` and the heads' own
  gradients (:func:`head_pass`); the trunk is then differentiated from ``z``, so that
  ``J = G_z · ∂z/∂θ`` (row k of ``G_z`` is ``∂Lₖ/∂z``);
* ``"loop"``: one ``torch.autograd.grad`` per task with ``retain_graph``;
* ``"batched"``: one vmapped backward (``is_grads_batched=True``) of the K tasks at once.

Every parameter the losses depend on that is not shared is returned with the gradient of
``Σₖ Lₖ``: under hard sharing, each head gets exactly its own task's gradient.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from mtlkit.balancing.engine.graph import (
    Split,
    as_features,
    autograd_leaves,
    split_at_features,
    unique,
)
from mtlkit.balancing.engine.strategy import Engine

__all__ = ["Gradients", "acquire", "check_shared", "head_pass"]


class Gradients:
    """What one acquisition pass produced.

    ``jacobian`` is the (K, P) Jacobian of the shared parameters. ``extra`` maps every other
    parameter reached to the gradient it must receive (already summed, or weighted, over tasks).
    """

    def __init__(self, jacobian: Tensor) -> None:
        self.jacobian = jacobian
        self.extra: dict[int, tuple[Tensor, Tensor]] = {}

    def add_extra(self, param: Tensor, grad: Tensor | None) -> None:
        """Add ``grad`` (``None``: nothing) to what ``param`` receives."""
        if grad is None:
            return
        key = id(param)
        if key in self.extra:
            self.extra[key] = (param, self.extra[key][1] + grad)
        else:
            self.extra[key] = (param, grad)


def check_shared(shared_params: Iterable[nn.Parameter]) -> list[Tensor]:
    """The shared parameters that require grad, each once; a clear error when there is none."""
    if isinstance(shared_params, Tensor):
        shared_params = [shared_params]
    shared = unique((p for p in shared_params if p.requires_grad), set())
    if not shared:
        raise ValueError(
            "shared_params is empty (or none requires grad): pass the parameters that all tasks "
            "share, e.g. model.shared_parameters()."
        )
    return shared


def _empty_jacobian(k_tasks: int, shared: Sequence[Tensor], device: torch.device) -> Tensor:
    """An uninitialised (K, P) Jacobian in the shared parameters' common dtype."""
    dtype = shared[0].dtype
    for p in shared[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    return torch.empty(k_tasks, sum(p.numel() for p in shared), dtype=dtype, device=device)


def _write_row(row: Tensor, grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> None:
    """Write the flattened ``grads`` (``None``: zero) of ``params`` into the (P,) ``row``."""
    pieces = [
        g.reshape(-1).to(row.dtype) if g is not None else row.new_zeros(p.numel())
        for g, p in zip(grads, params)
    ]
    torch.cat(pieces, out=row)


def _batched_vjp(
    out: Gradients,
    outputs: Tensor | Sequence[Tensor],
    inputs: Sequence[Tensor],
    grad_outputs: Tensor | Sequence[Tensor],
    shared: Sequence[Tensor],
    extras: Sequence[Tensor],
    retain_graph: bool,
) -> None:
    """One vmapped backward of K cotangents: Jacobian rows for ``shared`` (the first inputs),
    the sum over tasks for ``extras`` (the rest)."""
    grads = torch.autograd.grad(
        outputs,
        inputs,
        grad_outputs,
        retain_graph=retain_graph,
        is_grads_batched=True,
        allow_unused=True,
    )
    jacobian = out.jacobian
    k_tasks = jacobian.shape[0]
    pieces = [
        g.reshape(k_tasks, -1).to(jacobian.dtype)
        if g is not None
        else jacobian.new_zeros(k_tasks, p.numel())
        for g, p in zip(grads[: len(shared)], shared)
    ]
    torch.cat(pieces, dim=1, out=jacobian)
    for p, g in zip(extras, grads[len(shared) :]):
        out.add_extra(p, None if g is None else g.sum(0))


def _whole_graph(
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    strategy: str,
    retain_graph: bool,
    skip: frozenset[int] = frozenset(),
) -> Gradients:
    """Per-task gradients by differentiating each loss through the whole graph."""
    others = unique(autograd_leaves(list(losses)), {id(p) for p in shared} | skip)
    inputs = shared + others
    n = len(shared)
    out = Gradients(_empty_jacobian(len(losses), shared, stacked.device))
    if strategy == "batched":
        eye = torch.eye(len(losses), dtype=stacked.dtype, device=stacked.device)
        _batched_vjp(out, stacked, inputs, eye, shared, others, retain_graph)
        return out
    live = [k for k, loss in enumerate(losses) if loss.requires_grad]
    for k, loss in enumerate(losses):
        if k not in live:
            out.jacobian[k].zero_()
            continue
        grads = torch.autograd.grad(
            loss, inputs, retain_graph=retain_graph or k != live[-1], allow_unused=True
        )
        _write_row(out.jacobian[k], grads[:n], shared)
        for p, g in zip(others, grads[n:]):
            out.add_extra(p, g)
    return out


def head_pass(
    losses: Sequence[Tensor], split: Split
) -> tuple[list[Tensor], list[list[tuple[Tensor, Tensor]]], list[list[int]]]:
    """One backward through each task's head.

    Returns ``∂Lₖ/∂z`` stacked per feature as (K, *z.shape), each task's gradients of its own
    (non-shared) leaves above the features, and for each task the indices of the features its
    loss reaches (one dataset per task: each task reaches its own features only).
    """
    feats = split.features
    per_feature: list[list[Tensor]] = [[] for _ in feats]
    head_grads: list[list[tuple[Tensor, Tensor]]] = []
    reached: list[list[int]] = []
    for loss, leaves in zip(losses, split.head_leaves):
        if not loss.requires_grad:
            grads: Sequence[Tensor | None] = [None] * (len(feats) + len(leaves))
        else:
            grads = torch.autograd.grad(
                loss, [*feats, *leaves], retain_graph=True, allow_unused=True
            )
        for i, f in enumerate(feats):
            g = grads[i]
            per_feature[i].append(torch.zeros_like(f) if g is None else g)
        reached.append([i for i, g in enumerate(grads[: len(feats)]) if g is not None])
        head_grads.append([(p, g) for p, g in zip(leaves, grads[len(feats) :]) if g is not None])
    return [torch.stack(g) for g in per_feature], head_grads, reached


def _split_graph(
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    split: Split,
    strategy: str,
    retain_graph: bool,
) -> Gradients:
    """Per-task gradients through the heads to the features, then through the trunk; each task's
    trunk backward starts from the features its loss reaches only (with one dataset per task,
    its own batch's part of the graph, not every task's with zero cotangents)."""
    gz, head_grads, reached = head_pass(losses, split)
    reaching = [k for k, indices in enumerate(reached) if indices]
    feats = split.features
    inputs = shared + split.trunk_extra
    n = len(shared)
    out = Gradients(_empty_jacobian(len(losses), shared, stacked.device))
    for task_grads in head_grads:
        for p, g in task_grads:
            out.add_extra(p, g)
    if strategy == "batched":
        _batched_vjp(out, feats, inputs, gz, shared, split.trunk_extra, retain_graph)
        return out
    for k in range(len(losses)):
        if k not in reaching:  # this task's loss does not go through the trunk
            out.jacobian[k].zero_()
            continue
        grads = torch.autograd.grad(
            [feats[i] for i in reached[k]],
            inputs,
            [gz[i][k] for i in reached[k]],
            retain_graph=retain_graph or k != reaching[-1],
            allow_unused=True,
        )
        _write_row(out.jacobian[k], grads[:n], shared)
        for p, g in zip(split.trunk_extra, grads[n:]):
            out.add_extra(p, g)
    return out


def acquire(
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    features: Tensor | Sequence[Tensor] | None,
    engine: Engine,
    retain_graph: bool,
    skip: Sequence[Tensor] = (),
) -> Gradients:
    """The Jacobian of the shared parameters and the other parameters' gradients, by the split
    graph where ``features`` cut it, else by the whole graph, with ``engine``'s strategy.

    ``skip``: leaves that get neither a row nor a gradient (the other blocks of the shared
    parameters, when J is acquired block by block): autograd then stops at the lowest of
    ``shared`` instead of differentiating down to them."""
    excluded = frozenset(id(p) for p in skip)
    if not stacked.requires_grad:
        raise ValueError(
            "none of the losses requires grad: compute them from the model's outputs, outside "
            "torch.no_grad()."
        )
    feats = as_features(features)
    if feats is not None:
        split = split_at_features(losses, feats, {id(p) for p in shared} | excluded)
        if split is not None and split.used:
            return _split_graph(losses, stacked, shared, split, engine.strategy, retain_graph)
    return _whole_graph(losses, stacked, shared, engine.strategy, retain_graph, excluded)
