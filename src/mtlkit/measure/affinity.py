"""Inter-task affinity measured while training (TAG; Fifty, Amid, Zhao, Yu, Anil & Finn,
"Efficiently Identifying Task Groupings for Multi-Task Learning", NeurIPS 2021, arXiv 2109.04617).

At step t, a look-ahead update of the shared parameters θₛ on task i's gradient alone,
``θₛ' = θₛ − η ∇_θₛ Lᵢ`` (η the optimizer's learning rate, a plain gradient step as in the
paper), and for every task j

    Z_{i→j} = 1 − L_j(x, θₛ', θ_j) / L_j(x, θₛ, θ_j)

on the same batch x, the task heads θ_j unchanged. Z_{i→j} > 0: a step for i lowers j's loss
(i helps j); < 0: it raises it. The affinity is the mean of Z over the measured steps. The
look-ahead is functional (:func:`torch.func.functional_call` on copies of the buffers): the
real parameters, gradients, buffers and optimizer are untouched. The gradient cosines
cos(∇_θₛ Lᵢ, ∇_θₛ Lⱼ) come from the same per-task Jacobian. Which grouping of the tasks into
networks the affinity suggests is :mod:`mtlkit.evaluation.affinity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.func import functional_call

from mtlkit.balancing.engine import task_jacobian
from mtlkit.data import Batch
from mtlkit.measure.probes import EveryNSteps, StepView
from mtlkit.measure.task_cosine import gramian_cosines
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task

__all__ = ["TaskAffinityProbe", "lookahead_affinity"]


def lookahead_affinity(
    model: MultiTaskModel,
    tasks: Sequence[Task],
    batch: Batch,
    losses: Sequence[Tensor],
    lr: float,
    jacobian: Tensor | None = None,
) -> Tensor:
    """The (K, K) matrix Z with ``Z[i, j] = 1 − L_j(after a step on task i) / L_j(before)``.

    Args:
        model: the model, its parameters as before the step.
        tasks: the tasks, in the order of ``losses``.
        batch: the batch the losses were computed on (on the model's device).
        losses: the K task losses on ``batch`` (before the step).
        lr: the look-ahead step size η.
        jacobian: the (K, P) Jacobian of ``losses`` on the shared parameters, if already
            computed (else it is computed here, the graph kept).
    """
    shared = list(model.shared_parameters())
    if jacobian is None:
        jacobian = task_jacobian(losses, shared, None)
    names = {id(param): name for name, param in model.named_parameters()}
    before = torch.stack([loss.detach() for loss in losses])
    rows = []
    with torch.no_grad():
        for i in range(len(tasks)):
            state: dict[str, Tensor] = dict(model.named_parameters())
            state.update({name: buffer.clone() for name, buffer in model.named_buffers()})
            offset = 0
            for param in shared:
                step = jacobian[i, offset : offset + param.numel()].view_as(param)
                state[names[id(param)]] = param - lr * step.to(param.dtype)
                offset += param.numel()
            outputs = functional_call(model, state, (batch.inputs,))
            after = torch.stack(
                [
                    task.loss(
                        outputs[task.name], batch.targets[task.name], batch.masks.get(task.name)
                    )
                    for task in tasks
                ]
            )
            rows.append(1.0 - after / before)
    return torch.stack(rows)


class TaskAffinityProbe(EveryNSteps):
    """Measures TAG's inter-task affinity and the gradient cosines every ``every`` steps during a
    training (a :class:`~mtlkit.measure.probes.StepProbe`; pass it to ``Trainer`` or
    :func:`mtlkit.workflows.train`).

    Args:
        task_names: the tasks, in the order of the losses.
        every: measure on steps ``every``, ``2·every``, … (≥ 1).
    """

    def __init__(self, task_names: Sequence[str], every: int) -> None:
        super().__init__(every)
        if len(task_names) < 2:
            raise ValueError(f"affinity needs 2 or more tasks, got {list(task_names)}.")
        self.task_names = list(task_names)
        self.steps: list[int] = []
        self.affinities: list[list[list[float]]] = []
        self.cosines: list[list[list[float]]] = []

    def record(self, view: StepView) -> None:
        """Measure Z and the cosines at this step (nothing of the training is changed)."""
        shared = list(view.model.shared_parameters())
        jacobian = task_jacobian(view.losses, shared, view.features)
        affinity = lookahead_affinity(
            view.model, view.tasks, view.batch, view.losses, view.lr, jacobian
        )
        self.steps.append(view.step)
        self.affinities.append(affinity.double().tolist())
        self.cosines.append(gramian_cosines((jacobian @ jacobian.T).double()).tolist())

    def state_dict(self) -> dict[str, list]:
        """The measured steps and their matrices (for a resumed training)."""
        return {"steps": self.steps, "affinities": self.affinities, "cosines": self.cosines}

    def load_state_dict(self, state: dict[str, list]) -> None:
        """Restore :meth:`state_dict`."""
        self.steps = list(state["steps"])
        self.affinities, self.cosines = list(state["affinities"]), list(state["cosines"])

    def mean_affinity(self) -> list[list[float]]:
        """The mean of Z over the measured steps (K×K, rows: the task stepped on).

        Raises:
            ValueError: no step was measured (the training was shorter than ``every`` steps).
        """
        return _mean(self.affinities, self.every)

    def mean_cosine(self) -> list[list[float]]:
        """The mean gradient cosine over the measured steps (K×K, symmetric, 1 on the diagonal)."""
        return _mean(self.cosines, self.every)


def _mean(samples: list[list[list[float]]], every: int) -> list[list[float]]:
    if not samples:
        raise ValueError(
            f"no step was measured: the training had fewer than {every} steps; measure more "
            "often or train longer."
        )
    size = len(samples[0])
    return [
        [math.fsum(sample[i][j] for sample in samples) / len(samples) for j in range(size)]
        for i in range(size)
    ]
