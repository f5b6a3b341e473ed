"""Optimizers and learning-rate schedules."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "step", "cosine")


def create_optimizer(
    name: str,
    model_params: Iterable[nn.Parameter],
    balancer_params: Iterable[nn.Parameter] = (),
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or Adam over the model's and the balancer's parameters.

    Weight decay applies to the model's parameters only: a balancer's own parameters (uncertainty
    weighting's log-variances, IMTL-L's scales) are weights of the losses, not of the network, and
    decaying them would pull every task's weight toward a fixed value.
    """
    groups = [{"params": [p for p in model_params if p.requires_grad]}]
    own = [p for p in balancer_params if p.requires_grad]
    if own:
        groups.append({"params": own, "weight_decay": 0.0})
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}.")


def create_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    step_size: int = 10,
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-epoch schedule: step decay, cosine annealing to 0 over ``epochs``, or none."""
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "none":
        return None
    raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}.")
