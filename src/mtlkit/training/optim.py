"""Optimizers and learning-rate schedules from the configuration."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from mtlkit.config import OptimConfig, ScheduleConfig


def create_optimizer(config: OptimConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (with momentum and weight decay) or Adam, as the config says."""
    params = [p for p in params if p.requires_grad]
    if config.name == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def create_scheduler(
    config: ScheduleConfig, optimizer: torch.optim.Optimizer, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-epoch schedule: step decay, cosine annealing to 0 over ``epochs``, or none."""
    if config.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    if config.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return None
