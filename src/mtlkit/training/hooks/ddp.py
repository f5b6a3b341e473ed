"""Processes training together: the forward pass wrapped in ``DistributedDataParallel`` and,
for a gradient method, kept out of DDP's gradient averaging (``no_sync``)."""

from __future__ import annotations

import contextlib
import gc
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from mtlkit.balancing import Balancer, Need
from mtlkit.models import MultiTaskModel
from mtlkit.training.hooks.base import Hook

__all__ = ["DataParallelHook", "EncodeDecode"]


class EncodeDecode(nn.Module):
    """The model's forward pass returning the shared features too (what DDP wraps)."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, inputs: Tensor | dict[str, Tensor]
    ) -> tuple[Tensor | dict[str, Tensor], dict[str, Tensor]]:
        features = self.model.encode(inputs)
        return features, self.model.decode(features)


class DataParallelHook(Hook):
    """Wraps the forward pass in DDP (:attr:`forward`). A loss weighting back-propagates one
    scalar and DDP averages its gradients over the ranks; a gradient method's forward runs under
    ``no_sync``, and the balancer's engine averages what it writes itself."""

    name = "ddp"

    def __init__(self, model: MultiTaskModel, balancer: Balancer, device: torch.device) -> None:
        self.balancer = balancer
        self.forward: nn.Module = DistributedDataParallel(
            EncodeDecode(model), device_ids=[device] if device.type == "cuda" else None
        )

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        if isinstance(self.forward, DistributedDataParallel) and (
            self.balancer.needs is not Need.LOSSES
        ):
            return self.forward.no_sync()
        return contextlib.nullcontext()

    def release(self) -> nn.Module:
        """Drop the DDP wrapper and free it now; returns the plain forward pass (see
        :meth:`mtlkit.training.Trainer.release_replicas`)."""
        if isinstance(self.forward, DistributedDataParallel):
            self.forward = self.forward.module
            gc.collect()
        return self.forward
