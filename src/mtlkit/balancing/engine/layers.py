"""The layer-wise Gramian path: ``G = J Jᵀ`` from each layer's input activations and its K
output gradients, without the K×P Jacobian, then one backward of ``Σₖ wₖLₖ`` for the update.

K backward passes, one per task, run through the graph the forward pass built (from task k's
rows of ``∂Lₖ/∂z`` where the graph is cut at the features, else from its loss), as the full
path's do, but autograd is asked only for the gradients of the parameters below that are not
recognised layer weights. Pre-hooks on the graph's nodes see each layer's output gradient as
it passes (torchjd's ``autogram`` idea, on the autograd graph instead of module hooks):

* a fully connected layer's or a 2-D convolution's weight (``addmm``/``mm`` through ``Wᵀ``, or
  ``convolution`` with groups 1, each weight used once): the layer keeps, for every task, the
  smaller of its weight gradient (formed from the input autograd saved) and its output
  gradient (:class:`_LayerState`); after the K passes its share of G is formed by
  :func:`~mtlkit.balancing.engine.contract.add_layer_gramian` (or as the Gramian of the kept
  weight gradients), and what it kept is dropped;
* every other shared parameter (biases, normalisation layers' affine parameters, any module
  the path does not know, a weight used twice): its K rows, as autograd returns them.

A layer's hook runs only if autograd runs its node, which it does when something below the
layer needs a gradient; a layer at the bottom of the trunk with nothing below it (a bias-free
first layer) is therefore taken by its parameter's rows instead (:func:`_partition`).

Memory: a plain backward's, plus the K·min(weight, output gradient) entries of each recognised
layer and the K rows of the other parameters, plus one layer's bounded contraction at a time;
no K×P Jacobian. Time: the full path's K backward passes, without the large weight gradients,
then per layer the cheaper exact contraction. Why not one vectorised backward of the K tasks:
it holds K times every activation's gradient at once (on the seed CNN at batch 16 and K = 100,
550 MiB against the full path's 415), where one task at a time holds a plain backward's.
The result equals the full path's up to float rounding (G summed in float64 from float32
products in another order; ``wᵀJ`` summed by autograd in float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.graph import Node, get_gradient_edge

from mtlkit.balancing.engine.backward import WeighsGramian, exact_arithmetic, weighted_backward
from mtlkit.balancing.engine.contract import add_layer_gramian, add_rows_gramian, conv_rows
from mtlkit.balancing.engine.gradients import head_pass
from mtlkit.balancing.engine.graph import as_features, split_at_features
from mtlkit.balancing.engine.strategy import Engine
from mtlkit.balancing.replicas import Replicas
from mtlkit.balancing.solvers.gramian import work_dtype
from mtlkit.balancing.types import BalanceInfo

__all__ = ["layered_gramian", "layered_gramian_backward"]

_Uses = dict[Node, list[tuple[Node, int]]]


def _uses(roots: Sequence[Node]) -> _Uses:
    """For every node reachable from ``roots``: the nodes that consume its output, and at which
    of their inputs."""
    uses: _Uses = {}
    seen: set[Node] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for index, (nxt, _) in enumerate(node.next_functions):
            if nxt is not None:
                uses.setdefault(nxt, []).append((node, index))
                stack.append(nxt)
    return uses


def _layer_node(weight: Tensor, uses: _Uses) -> Node | None:
    """The node that reads ``weight`` as a fully connected layer's or a 2-D convolution's weight,
    where that is its only use; ``None`` otherwise."""
    consumers = uses.get(get_gradient_edge(weight).node, [])
    if len(consumers) != 1:
        return None
    node, index = consumers[0]
    if node.name() == "ConvolutionBackward0" and index == 1:
        plain = not node._saved_transposed and node._saved_groups == 1
        return node if plain and node._saved_input.dim() == 4 else None
    if node.name() != "TBackward0" or len(uses.get(node, [])) != 1:
        return None
    product, index = uses[node][0]
    if product.name() == "AddmmBackward0" and index == 2 and product._saved_alpha == 1:
        return product if product._saved_mat1.dim() == 2 else None
    if product.name() == "MmBackward0" and index == 1:
        return product if product._saved_self.dim() == 2 else None
    return None


def _ancestors(targets: set[Node], uses: _Uses) -> set[Node]:
    """The nodes from which one of ``targets`` is reachable (``targets`` included)."""
    found = set(targets)
    stack = list(targets)
    while stack:
        for consumer, _ in uses.get(stack.pop(), []):
            if consumer not in found:
                found.add(consumer)
                stack.append(consumer)
    return found


def _partition(shared: list[Tensor], uses: _Uses) -> tuple[dict[Node, Tensor], list[Tensor]]:
    """The recognised layers (node → weight) whose node the backward to the other shared
    parameters runs, and those other parameters (taken by their rows); parameters the roots do
    not reach are in neither."""
    reached = [p for p in shared if get_gradient_edge(p).node in uses]
    layers = {}
    for p in reached:
        node = _layer_node(p, uses)
        if node is not None:
            layers[node] = p
    while True:
        weights = {id(w) for w in layers.values()}
        rows = [p for p in reached if id(p) not in weights]
        run = _ancestors({get_gradient_edge(p).node for p in rows}, uses)
        idle = [node for node in layers if node not in run]
        if not idle:
            return layers, rows
        for node in idle:
            del layers[node]


class _LayerState:
    """What one recognised layer keeps of each task's backward pass until G is formed: the task's
    weight gradient where the weight has fewer entries than the layer's output gradient, else the
    output gradient itself (K times the smaller of the two in all)."""

    def __init__(self, node: Node, weight: Tensor, num_tasks: int) -> None:
        self.node = node
        self.weight = weight
        self.num_tasks = num_tasks
        self.conv = node.name() == "ConvolutionBackward0"
        self.task = 0
        """The task whose backward pass is running (set by the loop)."""
        self.stored: Tensor | None = None
        self.keeps_rows = False

    def inputs(self) -> Tensor:
        """The layer's input, as autograd saved it for the weight's gradient."""
        if self.conv:
            return self.node._saved_input
        node = self.node
        return node._saved_mat1 if node.name() == "AddmmBackward0" else node._saved_self

    def hook(self, grad_outputs: tuple[Tensor | None, ...]) -> None:
        """Pre-hook of the layer's node: keep this task's share (no gradient: a zero row)."""
        grad = grad_outputs[0]
        if grad is None:
            return
        with torch.no_grad():
            if self.stored is None:
                self.keeps_rows = self.weight.numel() < grad.numel()
                shape = self.weight.shape if self.keeps_rows else grad.shape
                dtype = torch.promote_types(grad.dtype, self.weight.dtype)
                self.stored = grad.new_zeros(self.num_tasks, *shape, dtype=dtype)
            self.stored[self.task] = self._weight_grad(grad) if self.keeps_rows else grad

    def _weight_grad(self, grad: Tensor) -> Tensor:
        """This task's gradient of the weight, from the layer's input and output gradient."""
        inputs = self.inputs().to(grad.dtype)
        if self.conv:
            node = self.node
            return torch.nn.grad.conv2d_weight(
                inputs,
                self.weight.shape,
                grad,
                node._saved_stride,
                node._saved_padding,
                node._saved_dilation,
            )
        return grad.T @ inputs

    def contract(self, gramian: Tensor, replicas: Replicas | None) -> None:
        """Add the layer's share of G to ``gramian`` and drop what was kept."""
        stored, self.stored = self.stored, None
        if stored is None:  # no task's gradient reached the layer
            return
        if self.keeps_rows:
            add_rows_gramian(gramian, stored, replicas)
            return
        inputs = self.inputs()
        if self.conv:
            node = self.node
            inputs, stored = conv_rows(
                inputs,
                stored,
                tuple(self.weight.shape[2:]),
                node._saved_stride,
                node._saved_padding,
                node._saved_dilation,
            )
        add_layer_gramian(gramian, inputs, stored, replicas)


def _roots(
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    features: Tensor | Sequence[Tensor] | None,
) -> tuple[tuple[Tensor, ...], list[Tensor]]:
    """What the vectorised backward starts from, and its K cotangents: the features and the K
    rows of ``∂Lₖ/∂z`` where the graph is cut there, else the losses and the identity."""
    feats = as_features(features)
    split = None if feats is None else split_at_features(losses, feats, {id(p) for p in shared})
    if split is not None and split.used:
        gz, _, _ = head_pass(losses, split)
        return split.features, gz
    eye = torch.eye(len(losses), dtype=stacked.dtype, device=stacked.device)
    return (stacked,), [eye]


def _task_passes(
    losses: Sequence[Tensor],
    shared: list[Tensor],
    features: Tensor | Sequence[Tensor] | None,
) -> tuple[list[Node], list[tuple[list[Tensor], list[Tensor] | None] | None]]:
    """The graph's roots, and for each task what its backward pass starts from: the features its
    loss reaches and its rows of ``∂Lₖ/∂z`` where the graph is cut there, else its loss
    (``None``: the task reaches no shared parameter)."""
    feats = as_features(features)
    split = None if feats is None else split_at_features(losses, feats, {id(p) for p in shared})
    if split is not None and split.used:
        gz, _, reached = head_pass(losses, split)
        roots = [get_gradient_edge(f).node for f in split.features]
        passes = [
            ([split.features[i] for i in indices], [gz[i][k] for i in indices]) if indices else None
            for k, indices in enumerate(reached)
        ]
        return roots, passes
    live = [loss if loss.requires_grad else None for loss in losses]
    roots = [get_gradient_edge(loss).node for loss in live if loss is not None]
    return roots, [None if loss is None else ([loss], None) for loss in live]


def layered_gramian(
    losses: Sequence[Tensor],
    shared: list[Tensor],
    features: Tensor | Sequence[Tensor] | None,
    replicas: Replicas | None = None,
) -> Tensor:
    """The (K, K) Gramian of the shared parameters' Jacobian, in the working precision, layer by
    layer (see the module's docstring); the graph is kept for the update."""
    k_tasks = len(losses)
    device = losses[0].device
    gramian = torch.zeros(k_tasks, k_tasks, dtype=work_dtype(device), device=device)
    roots, passes = _task_passes(losses, shared, features)
    layers, rows = _partition(shared, _uses(roots))
    if not rows:  # no shared parameter is reached
        return gramian
    states = [_LayerState(node, weight, k_tasks) for node, weight in layers.items()]
    kept = [p.new_zeros(k_tasks, p.numel()) for p in rows]
    handles = [state.node.register_prehook(state.hook) for state in states]
    try:
        for task, start in enumerate(passes):
            if start is None:
                continue
            for state in states:
                state.task = task
            outputs, cotangents = start
            grads = torch.autograd.grad(
                outputs, rows, cotangents, retain_graph=True, allow_unused=True
            )
            for row, g in zip(kept, grads):
                if g is not None:
                    row[task] = g.reshape(-1)
    finally:
        for handle in handles:
            handle.remove()
    for row in kept:
        add_rows_gramian(gramian, row, replicas)
    del kept
    for state in states:
        state.contract(gramian, replicas)
    return gramian


def layered_gramian_backward(
    method: WeighsGramian,
    losses: Sequence[Tensor],
    stacked: Tensor,
    shared: list[Tensor],
    features: Tensor | Sequence[Tensor] | None,
    engine: Engine,
    replicas: Replicas | None = None,
) -> BalanceInfo:
    """What :func:`~mtlkit.balancing.engine.backward.gramian_backward` writes, with G from
    :func:`layered_gramian` and ``wᵀJ`` from one backward of ``Σₖ wₖLₖ``."""
    gramian = layered_gramian(losses, shared, features, replicas)
    with exact_arithmetic(stacked):
        weights = method.weights_from_gramian(gramian, stacked.detach()).detach()
    weighted_backward(weights, losses, stacked, shared, features, engine, replicas)
    dtype = shared[0].dtype
    for p in shared[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    return BalanceInfo(weights=weights.to(dtype))
