"""Walking the autograd graph: the leaves the losses depend on, and the cut at the features.

The training loop passes ``features``, the shared representation ``z`` the task heads read. When
the losses reach the shared parameters only through ``z`` (hard parameter sharing) the graph is
*cut* there: each loss has its own leaves above ``z`` (its head) and the trunk's leaves lie below.
:func:`split_at_features` checks this on the graph itself rather than assuming it, and says
``None`` when a loss reaches a shared parameter around ``z`` (tied weights, cross-stitch) or one
feature tensor is computed from another.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import Tensor
from torch.autograd.graph import Node, get_gradient_edge

__all__ = ["Split", "as_features", "autograd_leaves", "split_at_features", "unique"]


def _walk(
    roots: Iterable[Node | None], stop: frozenset[tuple[Node, int]] = frozenset()
) -> tuple[list[Tensor], set[tuple[Node, int]]]:
    """Leaves (tensors requiring grad) reachable from the nodes ``roots``, not going through the
    gradient edges ``stop`` (``(node, output_nr)`` pairs); also returns the stop edges reached."""
    seen: set[Node] = set()
    reached: set[tuple[Node, int]] = set()
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


def _root(tensor: Tensor) -> Node | None:
    return get_gradient_edge(tensor).node if tensor.requires_grad else None


def autograd_leaves(roots: Sequence[Tensor]) -> list[Tensor]:
    """Every leaf tensor requiring grad that ``roots`` depend on, in first-seen order."""
    leaves, _ = _walk([_root(r) for r in roots])
    return leaves


def unique(tensors: Iterable[Tensor], exclude: set[int]) -> list[Tensor]:
    """``tensors`` without repeats and without those whose ``id`` is in ``exclude``, in order.

    ``exclude`` is updated with the ids of the tensors returned.
    """
    out: list[Tensor] = []
    for t in tensors:
        if id(t) not in exclude:
            exclude.add(id(t))
            out.append(t)
    return out


def as_features(features: Tensor | Sequence[Tensor] | None) -> tuple[Tensor, ...] | None:
    """The feature tensors that require grad, as a tuple; ``None`` when there are none."""
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
class Split:
    """The graph cut at the features: each loss's own leaves above it, the leaves below it."""

    features: tuple[Tensor, ...]
    head_leaves: list[list[Tensor]]
    """Per task, the non-shared leaves its loss reaches without going through the features."""
    trunk_extra: list[Tensor]
    """Non-shared leaves below the features (they get the gradient of the sum of the losses)."""
    used: bool
    """Whether any loss reaches the features at all."""


def split_at_features(
    losses: Sequence[Tensor], feats: tuple[Tensor, ...], shared_ids: set[int]
) -> Split | None:
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
    return Split(feats, head_leaves, unique(trunk, set(shared_ids)), used)
