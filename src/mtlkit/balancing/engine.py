"""The balancing engine: per-task gradients of the shared parameters, and the update into ``.grad``.

A gradient method needs the K×P Jacobian ``J`` of the K task losses with respect to the P shared
parameters (or only its Gramian ``J Jᵀ``). The engine obtains it once per step, from the graph the
forward pass built, by one of two strategies:

* ``"loop"``: K vector-Jacobian products (``torch.autograd.grad`` with ``retain_graph``), one per
  task, through the one graph;
* ``"batched"``: a single vmapped backward (``is_grads_batched=True``) of the K tasks at once.

``"auto"`` (the default) picks the one measured fastest for the device and K (see
``benchmarks/engine.py`` and :data:`AUTO_TABLE`; on CPU that is ``"loop"`` at every K). A user
forces one with ``balancer.engine = Engine(strategy="loop")``; every strategy gives the same
result up to floating-point rounding. The choice is a table, not a timing on the first step, so
that a run's numbers never depend on which strategy happened to be faster that day.

What it costs: an exact Jacobian needs one trunk backward per task, so a step costs about
``F + K·B`` against ``F + B`` for a plain ``sum(losses).backward()`` (F the forward, B a backward).
On the seed CNN on CPU (B ≈ F) that is ≈ 1.5× at K = 2; the engine's own work (graph walks, head
passes, building J, ``G = J Jᵀ``, ``wᵀJ``) is within the timing noise of K bare
``torch.autograd.grad`` calls. Applying ``wᵀJ`` from the materialised J (under 1 ms at K = 2,
~50 ms at K = 40 on the seed CNN) is far cheaper than the extra trunk backward (~90 ms, 1 thread)
that a Jacobian-free Gramian would need for the update.

When the training loop passes ``features`` (the shared representation ``z`` the task heads read)
and the losses reach the shared parameters only through ``z`` (hard parameter sharing; the engine
checks this on the graph, it does not assume it), the Jacobian is split at ``z``:
``J = G_z · ∂z/∂θ`` where row k of ``G_z`` is ``∂Lₖ/∂z``. The K rows of ``G_z`` cost one small
backward through each task's head, and the same pass yields the heads' own gradients; the trunk is
then differentiated once per task (``"loop"``) or once for all tasks (``"batched"``). Without
``features``, or when the losses reach a shared parameter around ``z`` (tied weights, cross-stitch),
the engine differentiates each loss through the whole graph instead; the result is the same.

Gramian methods get ``G = J Jᵀ`` from the materialised Jacobian and their update ``wᵀJ`` is written
straight into each parameter's ``.grad`` (one product per parameter, no extra backward pass).
Task-specific parameters (every parameter the losses depend on that is not shared) receive the
gradient of ``Σₖ Lₖ``: under hard sharing, each head gets exactly its own task's gradient.

Everything stays on the losses' device: nothing in a step reads a tensor back to the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.graph import get_gradient_edge

from mtlkit.balancing.base import (
    BalanceInfo,
    GradientAggregator,
    GramianWeighting,
    Need,
    stack_losses,
)

Strategy = Literal["auto", "loop", "batched"]
STRATEGIES: tuple[str, ...] = ("loop", "batched")
"""The strategies a user can force; ``"auto"`` resolves to one of them."""

AUTO_TABLE: dict[str, tuple[tuple[int, str], ...]] = {
    # device type -> ((largest K, strategy), ...); the first row with K <= largest K wins.
    # CPU, measured with benchmarks/engine.py (LeNet and the seed CNN, batch 256, K = 2, 10, 40,
    # 1 and 2 threads): "loop" wins at every K on both. The vmapped backward pays for batching
    # rules (the convolution weight gradient under vmap concatenates the input K times, ReLU's
    # backward broadcasts), 1.1-1.3x the loop's time at K = 2 and 1.5-3.7x at K = 40; torchjd's
    # layer-by-layer autogram Gramian is slower still (2-3x the loop at K = 2).
    # Other devices are not measured yet and get "loop", the safe choice.
    "cpu": ((1_000_000, "loop"),),
}
"""What ``"auto"`` picks by device type and number of tasks K (unlisted devices: ``"loop"``)."""


@dataclass(frozen=True)
class Engine:
    """How a gradient aggregator obtains the per-task gradients.

    Args:
        strategy: ``"auto"`` (the fastest measured for the device and K, see :data:`AUTO_TABLE`),
            ``"loop"`` (K backward passes through one forward graph) or ``"batched"`` (one vmapped
            backward of the K tasks). All give the same result up to rounding.

    A balancer holds one as ``balancer.engine`` (``None`` means ``Engine()``)::

        bal = create("upgrad", num_tasks=2)
        bal.engine = Engine(strategy="batched")
    """

    strategy: Strategy = "auto"

    def __post_init__(self) -> None:
        if self.strategy != "auto" and self.strategy not in STRATEGIES:
            choices = ", ".join(repr(s) for s in ("auto", *STRATEGIES))
            raise ValueError(f"strategy must be one of {choices}; got {self.strategy!r}.")

    def resolve(self, device: torch.device | str, num_tasks: int) -> str:
        """The strategy this engine uses for ``num_tasks`` tasks on ``device``."""
        if self.strategy != "auto":
            return self.strategy
        for max_tasks, strategy in AUTO_TABLE.get(torch.device(device).type, ()):
            if num_tasks <= max_tasks:
                return strategy
        return "loop"


DEFAULT_ENGINE = Engine()


# --------------------------------------------------------------------------------------------
# Walking the autograd graph


def _walk(roots: Iterable, stop: frozenset = frozenset()) -> tuple[list[Tensor], set]:
    """Leaves (tensors requiring grad) reachable from the nodes ``roots``, not going through the
    gradient edges ``stop`` (``(node, output_nr)`` pairs); also returns the stop edges reached."""
    seen: set = set()
    reached: set = set()
    stack = [node for node in roots if node is not None]
    leaves: list[Tensor] = []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.append(variable)
        for nxt, output_nr in node.next_functions:
            if nxt is None:
                continue
            if (nxt, output_nr) in stop:
                reached.add((nxt, output_nr))
            else:
                stack.append(nxt)
    return leaves, reached


def _root(tensor: Tensor):
    return get_gradient_edge(tensor).node if tensor.requires_grad else None


def autograd_leaves(roots: Sequence[Tensor]) -> list[Tensor]:
    """Every leaf tensor requiring grad that ``roots`` depend on, in first-seen order."""
    leaves, _ = _walk([_root(r) for r in roots])
    return leaves


def _unique(tensors: Iterable[Tensor], exclude: set[int]) -> list[Tensor]:
    out: list[Tensor] = []
    for t in tensors:
        if id(t) not in exclude:
            exclude.add(id(t))
            out.append(t)
    return out


def _as_features(features: Tensor | Sequence[Tensor] | None) -> tuple[Tensor, ...] | None:
    if features is None:
        return None
    feats = (features,) if isinstance(features, Tensor) else tuple(features)
    for i, f in enumerate(feats):
        if not isinstance(f, Tensor):
            raise TypeError(
                f"features[{i}] is a {type(f).__name__}: pass the tensor(s) that model.encode "
                "returned."
            )
    feats = tuple(f for f in feats if f.requires_grad)
    return feats or None


@dataclass
class _Split:
    """The graph cut at the features: each loss's own leaves above it, the leaves below it."""

    features: tuple[Tensor, ...]
    head_leaves: list[list[Tensor]]
    """Per task, the non-shared leaves its loss reaches without going through the features."""
    trunk_extra: list[Tensor]
    """Non-shared leaves below the features (they get the gradient of the sum of the losses)."""
    used: bool
    """Whether any loss reaches the features at all."""


def _split_at_features(
    losses: Sequence[Tensor], feats: tuple[Tensor, ...], shared_ids: set[int]
) -> _Split | None:
    """Cut the graph at ``feats``; ``None`` when it is not a cut: a loss reaches a shared
    parameter around the features, or one feature is computed from another."""
    edges = [get_gradient_edge(f) for f in feats]
    stop = frozenset((e.node, e.output_nr) for e in edges)
    trunk, nested = _walk([e.node for e in edges], stop)
    if nested:
        return None
    head_leaves: list[list[Tensor]] = []
    used = False
    for loss in losses:
        leaves, reached = _walk([_root(loss)], stop)
        if any(id(leaf) in shared_ids for leaf in leaves):
            return None
        head_leaves.append(leaves)
        used = used or bool(reached)
    return _Split(feats, head_leaves, _unique(trunk, set(shared_ids)), used)


# --------------------------------------------------------------------------------------------
# Obtaining the per-task gradients


def _flat_size(params: Sequence[Tensor]) -> int:
    return sum(p.numel() for p in params)


def _common_dtype(params: Sequence[Tensor]) -> torch.dtype:
    dtype = params[0].dtype
    for p in params[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    return dtype


def _write_row(row: Tensor, grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> None:
    """Write the flattened ``grads`` (``None``: zero) of ``params`` into the (P,) ``row``."""
    pieces = [
        g.reshape(-1).to(row.dtype) if g is not None else row.new_zeros(p.numel())
        for g, p in zip(grads, params)
    ]
    torch.cat(pieces, out=row)


class _Gradients:
    """What one acquisition pass produced.

    ``jacobian`` is the (K, P) Jacobian of the shared parameters. ``extra`` maps every other
    parameter reached to the gradient it must receive (already summed, or weighted, over tasks).
    """

    def __init__(self, jacobian: Tensor) -> None:
        self.jacobian = jacobian
        self.extra: dict[int, tuple[Tensor, Tensor]] = {}

    def add_extra(self, param: Tensor, grad: Tensor | None) -> None:
        if grad is None:
            return
        key = id(param)
        if key in self.extra:
            self.extra[key] = (param, self.extra[key][1] + grad)
        else:
            self.extra[key] = (param, grad)


def _full_graph(
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    strategy: str,
    retain_graph: bool,
) -> _Gradients:
    """Per-task gradients by differentiating each loss through the whole graph."""
    shared_ids = {id(p) for p in shared}
    others = _unique(autograd_leaves(list(losses)), set(shared_ids))
    inputs = shared + others
    k_tasks = len(losses)
    n = len(shared)
    jacobian = torch.empty(
        k_tasks, _flat_size(shared), dtype=_common_dtype(shared), device=stacked.device
    )
    out = _Gradients(jacobian)
    if strategy == "batched" and stacked.requires_grad:
        eye = torch.eye(k_tasks, dtype=stacked.dtype, device=stacked.device)
        _batched_vjp(out, stacked, inputs, eye, shared, others, retain_graph)
        return out
    live = [k for k, loss in enumerate(losses) if loss.requires_grad]
    for k, loss in enumerate(losses):
        if k not in live:
            jacobian[k].zero_()
            continue
        grads = torch.autograd.grad(
            loss, inputs, retain_graph=retain_graph or k != live[-1], allow_unused=True
        )
        _write_row(jacobian[k], grads[:n], shared)
        for p, g in zip(others, grads[n:]):
            out.add_extra(p, g)
    return out


def _fill_batched(jacobian: Tensor, grads: Sequence[Tensor | None], params: Sequence[Tensor]):
    """Copy per-parameter (K, *shape) gradients into the (K, P) ``jacobian``."""
    k_tasks = jacobian.shape[0]
    pieces = [
        g.reshape(k_tasks, -1).to(jacobian.dtype)
        if g is not None
        else jacobian.new_zeros(k_tasks, p.numel())
        for g, p in zip(grads, params)
    ]
    torch.cat(pieces, dim=1, out=jacobian)


def _batched_vjp(
    out: _Gradients,
    outputs,
    inputs: Sequence[Tensor],
    grad_outputs,
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
    _fill_batched(out.jacobian, grads[: len(shared)], shared)
    for p, g in zip(extras, grads[len(shared) :]):
        out.add_extra(p, None if g is None else g.sum(0))


def _head_pass(
    losses: Sequence[Tensor], split: _Split
) -> tuple[list[Tensor], list[list[tuple[Tensor, Tensor]]], list[int]]:
    """One backward through each task's head.

    Returns ``∂Lₖ/∂z`` stacked per feature as (K, *z.shape), each task's gradients of its own
    (non-shared) leaves above the features, and the tasks whose loss reaches the features.
    """
    feats = split.features
    per_feature: list[list[Tensor]] = [[] for _ in feats]
    head_grads: list[list[tuple[Tensor, Tensor]]] = []
    reaching: list[int] = []
    for k, (loss, leaves) in enumerate(zip(losses, split.head_leaves)):
        if not loss.requires_grad:
            grads: Sequence[Tensor | None] = [None] * (len(feats) + len(leaves))
        else:
            grads = torch.autograd.grad(
                loss, [*feats, *leaves], retain_graph=True, allow_unused=True
            )
        for i, f in enumerate(feats):
            g = grads[i]
            per_feature[i].append(torch.zeros_like(f) if g is None else g)
        if any(g is not None for g in grads[: len(feats)]):
            reaching.append(k)
        head_grads.append([(p, g) for p, g in zip(leaves, grads[len(feats) :]) if g is not None])
    return [torch.stack(g) for g in per_feature], head_grads, reaching


def _split_graph(
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    split: _Split,
    strategy: str,
    retain_graph: bool,
) -> _Gradients:
    """Per-task gradients through the heads to the features, then through the trunk."""
    gz, head_grads, reaching = _head_pass(losses, split)
    feats = split.features
    inputs = shared + split.trunk_extra
    n = len(shared)
    k_tasks = len(losses)
    jacobian = torch.empty(
        k_tasks, _flat_size(shared), dtype=_common_dtype(shared), device=stacked.device
    )
    out = _Gradients(jacobian)
    for task_grads in head_grads:
        for p, g in task_grads:
            out.add_extra(p, g)
    if strategy == "batched":
        _batched_vjp(out, feats, inputs, gz, shared, split.trunk_extra, retain_graph)
        return out
    for k in range(k_tasks):
        if k not in reaching:  # this task's loss does not go through the trunk
            jacobian[k].zero_()
            continue
        grads = torch.autograd.grad(
            feats,
            inputs,
            [g[k] for g in gz],
            retain_graph=retain_graph or k != reaching[-1],
            allow_unused=True,
        )
        _write_row(jacobian[k], grads[:n], shared)
        for p, g in zip(split.trunk_extra, grads[n:]):
            out.add_extra(p, g)
    return out


def _acquire(
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    features: Tensor | Sequence[Tensor] | None,
    engine: Engine,
    retain_graph: bool,
) -> _Gradients:
    if not stacked.requires_grad:
        raise ValueError(
            "none of the losses requires grad: compute them from the model's outputs, outside "
            "torch.no_grad()."
        )
    strategy = engine.resolve(stacked.device, len(losses))
    feats = _as_features(features)
    if feats is not None:
        split = _split_at_features(losses, feats, {id(p) for p in shared})
        if split is not None and split.used:
            return _split_graph(losses, stacked, shared, split, strategy, retain_graph)
    return _full_graph(losses, stacked, shared, strategy, retain_graph)


def _check_shared(shared_params: Iterable[nn.Parameter]) -> list[Tensor]:
    if isinstance(shared_params, Tensor):
        shared_params = [shared_params]
    shared = _unique((p for p in shared_params if p.requires_grad), set())
    if not shared:
        raise ValueError(
            "shared_params is empty (or none requires grad): pass the parameters that all tasks "
            "share, e.g. model.shared_parameters()."
        )
    return shared


# --------------------------------------------------------------------------------------------
# Public helpers


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
    shared = _check_shared(params)
    grads = _acquire(list(losses), stacked, shared, features, engine or DEFAULT_ENGINE, True)
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

    What :attr:`Need.GRAD_NORMS` methods read; pass only the parameters the method looks at (e.g.
    GradNorm's last shared layer) to keep it cheap.
    """
    return torch.linalg.vector_norm(task_jacobian(losses, params, features, engine=engine), dim=1)


# --------------------------------------------------------------------------------------------
# Writing into .grad


@torch.no_grad()
def _accumulate(param: Tensor, grad: Tensor, *, owned: bool) -> None:
    """Add ``grad`` to ``param.grad`` as ``backward()`` does; ``owned``: ``grad`` may be kept."""
    if grad.shape != param.shape:
        grad = grad.view(param.shape) if grad.is_contiguous() else grad.reshape(param.shape)
    if param.grad is None:
        if owned and grad.dtype == param.dtype and grad.stride() == param.stride():
            param.grad = grad
        else:
            param.grad = torch.empty_like(param).copy_(grad)
    else:
        param.grad.add_(grad.to(param.grad.dtype))


def accumulate_flat(params: Sequence[Tensor], flat: Tensor) -> None:
    """Add the slices of a flat (P,) vector to the ``.grad`` of each parameter, as backward does."""
    offset = 0
    for p in params:
        n = p.numel()
        _accumulate(p, flat[offset : offset + n], owned=False)
        offset += n


@torch.no_grad()
def _accumulate_combination(params: Sequence[Tensor], weights: Tensor, jacobian: Tensor) -> None:
    """Add ``weightsᵀ J`` to the parameters' ``.grad``, one parameter's columns at a time."""
    weights = weights.to(jacobian.dtype)
    offset = 0
    for p in params:
        n = p.numel()
        _accumulate(p, weights @ jacobian[:, offset : offset + n], owned=True)
        offset += n


def _accumulate_extra(grads: _Gradients) -> None:
    for param, grad in grads.extra.values():
        _accumulate(param, grad, owned=True)


# --------------------------------------------------------------------------------------------
# The backward of a gradient aggregator


def aggregate_backward(
    aggregator: GradientAggregator,
    losses: Sequence[Tensor],
    shared_params: Iterable[nn.Parameter],
    features: Tensor | Sequence[Tensor] | None = None,
    *,
    engine: Engine | None = None,
) -> BalanceInfo:
    """Fill ``.grad`` for a gradient aggregator (its :meth:`~GradientAggregator.backward`).

    Shared parameters get ``aggregator.aggregate(J)`` (``wᵀJ`` with ``w`` read off the Gramian for
    a :class:`GramianWeighting`); every other parameter the losses depend on gets the gradient of
    ``Σₖ Lₖ`` — its own task's gradient under hard sharing. Gradients add to an existing
    ``.grad``. ``engine`` defaults to ``aggregator.engine``, then to ``Engine()``.
    """
    stacked = stack_losses(losses)
    aggregator._check_num_tasks(stacked.numel())
    losses = list(losses)
    shared = _check_shared(shared_params)
    engine = engine or getattr(aggregator, "engine", None) or DEFAULT_ENGINE
    if aggregator.on_features:
        return _representation_backward(aggregator, losses, stacked, shared, features)
    grads = _acquire(losses, stacked, shared, features, engine, retain_graph=False)
    jacobian = grads.jacobian
    with torch.no_grad():
        if isinstance(aggregator, GramianWeighting) and aggregator.needs <= Need.GRAMIAN:
            weights = aggregator.weights_from_gramian(jacobian @ jacobian.T, stacked.detach())
            _accumulate_combination(shared, weights, jacobian)
            info = BalanceInfo(weights=weights.detach())
        else:
            direction = aggregator.aggregate(jacobian, stacked.detach())
            if direction.shape != (jacobian.shape[1],):
                raise ValueError(
                    f"{type(aggregator).__name__}.aggregate returned shape "
                    f"{tuple(direction.shape)}; expected ({jacobian.shape[1]},), one entry per "
                    "shared parameter coordinate."
                )
            accumulate_flat(shared, direction)
            info = BalanceInfo(weights=None)
        _accumulate_extra(grads)
    return info


def _representation_backward(
    aggregator: GradientAggregator,
    losses: list[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    features: Tensor | Sequence[Tensor] | None,
) -> BalanceInfo:
    """Sener & Koltun's MGDA-UB shortcut: weights from the Gramian of ``∂Lₖ/∂z``, then one
    backward of ``Σₖ wₖLₖ`` through the whole network."""
    name = getattr(aggregator, "method_name", type(aggregator).__name__)
    if not isinstance(aggregator, GramianWeighting):
        raise TypeError(
            f"{name} sets on_features but is not a GramianWeighting: the representation-level "
            "shortcut needs weights_from_gramian."
        )
    if features is None:
        raise ValueError(
            f"{name} works on the shared representation: pass features=model.encode(x) (the "
            "tensor the task heads read) to balancer.backward."
        )
    feats = _as_features(features)
    if feats is None:
        raise ValueError(
            f"{name}: the features do not require grad; pass the attached output of "
            "model.encode(x), not a detached copy."
        )
    if not stacked.requires_grad:
        raise ValueError("none of the losses requires grad.")
    split = _split_at_features(losses, feats, {id(p) for p in shared})
    if split is None:
        # a loss reaches a shared parameter around the features: heads pass for ∂Lₖ/∂z only
        split_z = _Split(feats, [[] for _ in losses], [], True)
        gz, _, _ = _head_pass(losses, split_z)
    else:
        if not split.used:
            raise ValueError(
                f"{name}: no loss depends on the given features; pass the tensor the task heads "
                "read (model.encode(x))."
            )
        gz, head_grads, _ = _head_pass(losses, split)
    with torch.no_grad():
        gramian = sum(g.flatten(1) @ g.flatten(1).T for g in gz)
        weights = aggregator.weights_from_gramian(gramian, stacked.detach()).detach()
    if split is None:
        torch.autograd.backward((weights.to(stacked.dtype) * stacked).sum())
        return BalanceInfo(weights=weights)
    with torch.no_grad():
        grad_z = [torch.tensordot(weights.to(g.dtype), g, dims=1) for g in gz]
    torch.autograd.backward(feats, grad_z)
    with torch.no_grad():
        for k, task_grads in enumerate(head_grads):
            for p, g in task_grads:
                _accumulate(p, g * weights[k].to(g.dtype), owned=True)
    return BalanceInfo(weights=weights)
