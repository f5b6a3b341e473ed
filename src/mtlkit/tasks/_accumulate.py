"""What the metric accumulators of the task types share: their states moved together, input
checks and row selection."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class MetricSet:
    """The torchmetrics states of one task's accumulator, which live on one device.

    Args:
        *states: the metrics whose states the accumulator keeps.
    """

    def __init__(self, *states: Metric) -> None:
        self._states = states

    @property
    def device(self) -> torch.device:
        """The device the accumulated state lives on."""
        return self._states[0].device

    def to(self, device: torch.device | str) -> MetricSet:
        """Move the accumulated state to ``device``; returns ``self``."""
        for state in self._states:
            state.to(device)
        return self


def check_batch(output: Tensor, target: Tensor, mask: Tensor | None, device: torch.device):
    """Refuse tensors on another device than the metric's, or a mask that is no (N,) bool."""
    for name, tensor in (("output", output), ("target", target), ("mask", mask)):
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(tensor).__name__}.")
        if tensor.device != device:
            raise ValueError(
                f"{name} is on {tensor.device} but the metric is on {device}: call .to(device) "
                "on the metric or move the tensors."
            )
    if output.shape[0] != target.shape[0]:
        raise ValueError(
            f"output has {output.shape[0]} rows but target has {target.shape[0]}: pass one "
            "target per row."
        )
    if mask is not None and (mask.dtype != torch.bool or mask.shape != target.shape[:1]):
        raise ValueError(
            f"mask must be a ({target.shape[0]},) bool tensor, got {mask.dtype} "
            f"{tuple(mask.shape)}."
        )


def labelled(mask: Tensor | None, *tensors: Tensor) -> tuple[Tensor, ...]:
    """The rows of ``tensors`` where ``mask`` is True (all rows without a mask), detached."""
    if mask is None:
        return tuple(t.detach() for t in tensors)
    return tuple(t.detach()[mask] for t in tensors)
