"""Writing into ``.grad``: adding an update to the parameters' gradients as ``backward()`` does,
and the two products of a Jacobian that a Gramian method needs, ``J Jᵀ`` and ``wᵀJ``.

Gradients add to an existing ``.grad`` (gradient accumulation works as with ``backward()``); a
missing ``.grad`` is created in the parameter's dtype and layout, taking over the computed tensor
where that is safe instead of copying it.

:func:`wide_gramian` and :func:`accumulate_combination` compute in the solvers' working precision
(float64) from the float32 Jacobian, a bounded slice of columns at a time: a float32 product is
exact in float64 and the sums' rounding (≈1e-16) is far below float32's, so the Gramian of
permuted rows is the permuted Gramian to 1e-16 (a float32 ``J Jᵀ`` differs by ≈P·6e-8 between
two row orders, which moved UPGrad's direction on rank-deficient Jacobians by 1e-6), and
``wᵀJ`` keeps large cancelling weights (the dual cone's, near a Pareto-stationary point) exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.engine.gradients import Gradients
from mtlkit.balancing.solvers.gramian import work_dtype

__all__ = [
    "accumulate",
    "accumulate_combination",
    "accumulate_extra",
    "accumulate_flat",
    "wide_gramian",
]

_WIDE_CHUNK = 1 << 20
"""Entries of J (K × columns) converted to the working precision at once: 8 MiB in float64."""


def _column_chunks(jacobian: Tensor, start: int = 0, stop: int | None = None) -> list[Tensor]:
    """The columns ``start:stop`` of ``jacobian`` in slices of at most ``_WIDE_CHUNK`` entries."""
    stop = jacobian.shape[1] if stop is None else stop
    width = max(1, _WIDE_CHUNK // max(1, jacobian.shape[0]))
    return [jacobian[:, i : min(i + width, stop)] for i in range(start, stop, width)]


@torch.no_grad()
def wide_gramian(jacobian: Tensor, into: Tensor | None = None) -> Tensor:
    """``J Jᵀ`` in the working precision (float64; float32 on MPS), a slice of columns at a time;
    added to ``into`` where given (a Gramian accumulated piece by piece)."""
    wide = work_dtype(jacobian.device)
    k = jacobian.shape[0]
    gramian = jacobian.new_zeros(k, k, dtype=wide) if into is None else into
    for chunk in _column_chunks(jacobian):
        block = chunk.to(wide)
        gramian.addmm_(block, block.T)
    return gramian


@torch.no_grad()
def accumulate(param: Tensor, grad: Tensor, *, owned: bool) -> None:
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
        accumulate(p, flat[offset : offset + n], owned=False)
        offset += n


@torch.no_grad()
def accumulate_combination(params: Sequence[Tensor], weights: Tensor, jacobian: Tensor) -> None:
    """Add ``weightsᵀ J`` to the parameters' ``.grad``, one parameter's columns at a time, summed
    in the wider of the weights' and J's dtypes (float64 weights: exact products, one rounding
    to J's dtype at the end)."""
    wide = torch.promote_types(weights.dtype, jacobian.dtype)
    weights = weights.to(wide)
    offset = 0
    for p in params:
        n = p.numel()
        pieces = [
            weights @ chunk.to(wide) for chunk in _column_chunks(jacobian, offset, offset + n)
        ]
        accumulate(p, torch.cat(pieces).to(jacobian.dtype), owned=True)
        offset += n


def accumulate_extra(grads: Gradients) -> None:
    """Give every non-shared parameter that an acquisition reached its gradient."""
    for param, grad in grads.extra.values():
        accumulate(param, grad, owned=True)
