"""Optimizers and learning-rate schedules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtlkit.models import HEADS, MultiTaskModel, check_group_names, group_parameters, layer_groups

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "step", "cosine")


@dataclass(frozen=True)
class ParamGroup:
    """Model parameters that share a learning rate (a layer group, a task's head, the rest).

    Attributes:
        name: the group's name in the optimizer (``param_group["name"]``) and in the run's log
            (``lr/<name>``).
        params: its parameters.
        lr: its learning rate; ``None``: the optimizer's.
    """

    name: str
    params: tuple[nn.Parameter, ...]
    lr: float | None = None


def rate_groups(
    model: MultiTaskModel,
    lr: float,
    *,
    task_lr: Mapping[str, float] | None = None,
    group_lr: Mapping[str, float] | None = None,
) -> list[ParamGroup]:
    """The model's parameters in groups with their own learning rates.

    Each task's head is a group ``heads.<task>`` whose rate is ``task_lr[task]``, else
    ``group_lr["heads"]``, else ``lr``. The other parameters form one group ``shared`` at ``lr``
    or, with ``group_lr``, one group per layer group (``stage1``, …; see
    :mod:`mtlkit.models.groups`) at ``group_lr.get(name, lr)``.

    Raises:
        ValueError: a task the model has no head for, a name that is not a layer group, or
            ``group_lr`` for a network without layer groups.
    """
    task_lr, group_lr = dict(task_lr or {}), dict(group_lr or {})
    for task in task_lr:
        if task not in model.task_names:
            raise ValueError(f"no task {task!r}; tasks are {', '.join(model.task_names)}.")
    head_default = group_lr.get(HEADS, lr)
    heads = [
        ParamGroup(
            f"{HEADS}.{task}", tuple(model.task_parameters(task)), task_lr.get(task, head_default)
        )
        for task in model.task_names
    ]
    if group_lr:
        groups = layer_groups(model)
        check_group_names(groups, group_lr)
        rest = [
            ParamGroup(name, tuple(group_parameters(modules)), group_lr.get(name, lr))
            for name, modules in groups.items()
            if name != HEADS
        ]
    else:
        own = {id(p) for group in heads for p in group.params}
        rest = [ParamGroup("shared", tuple(p for p in model.parameters() if id(p) not in own), lr)]
    return rest + heads


def create_optimizer(
    name: str,
    model_params: Iterable[nn.Parameter] | Sequence[ParamGroup],
    balancer_params: Iterable[nn.Parameter] = (),
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD (with ``momentum``) or Adam over the model's and the balancer's parameters.

    ``model_params`` are the model's parameters (one group) or :class:`ParamGroup` s, each with
    its own learning rate and name (the balancer's group is then named ``balancer``); a schedule
    scales every group's rate by the same factor. Frozen parameters (``requires_grad`` false)
    are kept in their group: they get no gradient, so the optimizer leaves them as they are, and
    learn once unfrozen.

    Weight decay applies to the model's parameters only: a balancer's own parameters (uncertainty
    weighting's log-variances, IMTL-L's scales) are weights of the losses, not of the network, and
    decaying them would pull every task's weight toward a fixed value.
    """
    model_params = list(model_params)
    named = bool(model_params) and all(isinstance(g, ParamGroup) for g in model_params)
    groups: list[dict] = (
        [
            {"params": list(group.params), "name": group.name}
            | ({} if group.lr is None else {"lr": group.lr})
            for group in model_params
            if group.params
        ]
        if named
        else [{"params": model_params}]
    )
    own = [p for p in balancer_params if p.requires_grad]
    if own:
        groups.append(
            {"params": own, "weight_decay": 0.0} | ({"name": "balancer"} if named else {})
        )
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}.")


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The current learning rate of each named parameter group, by name."""
    return {group["name"]: group["lr"] for group in optimizer.param_groups if "name" in group}


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
