"""Averaging gradients over data-parallel replicas before they are used or written.

With :class:`~mtlkit.balancing.replicas.Replicas` the engine replaces what it acquired by its
replica mean before any method reads it: the K×P Jacobian (one collective of K·P numbers, in
place), and the gradients of the other parameters (one collective, flattened together). Without
replicas nothing happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.engine.gradients import Gradients
from mtlkit.balancing.replicas import Replicas

__all__ = ["average_acquired", "average_in_place"]


@torch.no_grad()
def average_in_place(tensors: Sequence[Tensor], replicas: Replicas | None) -> None:
    """Replace every tensor of ``tensors`` by its replica mean, in one collective."""
    if replicas is None or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    replicas.mean_(flat)
    for tensor, chunk in zip(tensors, flat.split([t.numel() for t in tensors])):
        tensor.copy_(chunk.view_as(tensor))


def average_acquired(grads: Gradients, replicas: Replicas | None) -> None:
    """Replace the Jacobian and the other parameters' gradients of ``grads`` by replica means."""
    if replicas is None:
        return
    with torch.no_grad():
        replicas.mean_(grads.jacobian)
    average_in_place([grad for _, grad in grads.extra.values()], replicas)
