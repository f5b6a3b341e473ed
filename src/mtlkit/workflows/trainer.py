"""The one way a workflow builds its :class:`~mtlkit.training.Trainer`: from the config, with
every hook the config asks for (noise, teachers, penalties, precision, the non-finite guard,
task cosines, the validation views), so that no workflow can drop a configured key."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtlkit.balancing import Balancer
from mtlkit.config import ExperimentConfig
from mtlkit.measure.probes import StepProbe
from mtlkit.models import MultiTaskModel, PreferenceModel
from mtlkit.tasks import Task
from mtlkit.training import ProcessGroupReplicas, Trainer, retain_freed_memory
from mtlkit.training.hooks import Hook
from mtlkit.training.hooks.preference import PreferenceHook
from mtlkit.workflows.build import (
    build_noise,
    build_optimization,
    build_penalties,
    build_views,
    trainer_settings,
)
from mtlkit.workflows.teachers import build_teachers

__all__ = ["build_trainer"]


def build_trainer(
    config: ExperimentConfig,
    model: MultiTaskModel,
    tasks: Sequence[Task],
    balancer: Balancer,
    device: torch.device,
    *,
    replicas: ProcessGroupReplicas | None = None,
    probes: Sequence[StepProbe] = (),
    hooks: Sequence[Hook] = (),
) -> Trainer:
    """The trainer of ``config`` for ``model``, its ``tasks`` and ``balancer`` on ``device``:
    the optimizer and schedule over the model's trainable parameters (freeze groups before),
    and the hooks of ``train:``, ``noise:``, ``regularization:``, the tasks' ``distill`` and
    ``eval.views`` (validation scores over the same views as the test evaluation). Across
    ``replicas`` each process draws its noise from ``seed + rank`` and only the main process
    shows a progress bar. A preference-conditioned model trains on a preference drawn for
    every batch (:class:`~mtlkit.training.hooks.preference.PreferenceHook`, the same on every
    process). ``hooks`` are the caller's own, called after the configured ones. On a CPU the
    process keeps the memory a step frees for the next step
    (:func:`~mtlkit.training.retain_freed_memory`)."""
    if device.type == "cpu":
        retain_freed_memory()
    rank = 0 if replicas is None else replicas.rank
    optimizer, scheduler = build_optimization(config, model, balancer)
    return Trainer(
        model,
        tasks,
        balancer,
        optimizer,
        scheduler,
        device=device,
        progress=config.train.progress and rank == 0,
        replicas=replicas,
        probes=probes,
        noise=build_noise(config),
        seed=config.seed + rank,
        teachers=build_teachers(config, list(tasks), model),
        penalties=build_penalties(config, model, balancer),
        views=build_views(config),
        hooks=[
            *(
                [PreferenceHook(model, balancer, model.dirichlet, config.seed)]
                if isinstance(model, PreferenceModel)
                else []
            ),
            *hooks,
        ],
        **trainer_settings(config),
    )
