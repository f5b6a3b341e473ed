"""Writing into ``.grad``: adding an update to the parameters' gradients as ``backward()`` does.

Gradients add to an existing ``.grad`` (gradient accumulation works as with ``backward()``); a
missing ``.grad`` is created in the parameter's dtype and layout, taking over the computed tensor
where that is safe instead of copying it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.engine.gradients import Gradients

__all__ = ["accumulate", "accumulate_combination", "accumulate_extra", "accumulate_flat"]


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
    """Add ``weightsᵀ J`` to the parameters' ``.grad``, one parameter's columns at a time."""
    weights = weights.to(jacobian.dtype)
    offset = 0
    for p in params:
        n = p.numel()
        accumulate(p, weights @ jacobian[:, offset : offset + n], owned=True)
        offset += n


def accumulate_extra(grads: Gradients) -> None:
    """Give every non-shared parameter that an acquisition reached its gradient."""
    for param, grad in grads.extra.values():
        accumulate(param, grad, owned=True)
