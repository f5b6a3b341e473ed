"""Which tasks help each other: inter-task affinity (TAG) and gradient cosines, and a grouping.

**Inter-task affinity** (Fifty, Amid, Zhao, Yu, Anil & Finn, "Efficiently Identifying Task
Groupings for Multi-Task Learning", NeurIPS 2021, arXiv 2109.04617): at step t, a look-ahead
update of the shared parameters θₛ on task i's gradient alone, ``θₛ' = θₛ − η ∇_θₛ Lᵢ`` (η the
optimizer's learning rate, a plain gradient step as in the paper), and for every task j

    Z_{i→j} = 1 − L_j(x, θₛ', θ_j) / L_j(x, θₛ, θ_j)

on the same batch x, the task heads θ_j unchanged. Z_{i→j} > 0: a step for i lowers j's loss
(i helps j); < 0: it raises it. The affinity is the mean of Z over the measured steps. The
look-ahead is functional (:func:`torch.func.functional_call` on copies of the buffers): the
real parameters, gradients, buffers and optimizer are untouched.

**Gradient cosine**: cos(∇_θₛ Lᵢ, ∇_θₛ Lⱼ) from the same per-task Jacobian, averaged over the
same steps.

**Grouping** (TAG's network selection, exhaustively for small K): a partition of the tasks
into groups, one network per group, scores the mean over tasks j of the mean affinity onto j
from the other members of its group, ``(1/(|G|−1)) Σ_{i∈G, i≠j} Z_{i→j}`` (0 for a task alone).
:func:`best_groupings` gives the best partition for each number of networks; the suggestion is
the best of all (fewer networks on ties). TAG also allows a task to sit in several groups; this
chooses among partitions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import functional_call

from mtlkit.balancing.engine import task_jacobian
from mtlkit.data import Batch
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.training.probes import EveryNSteps, StepView
from mtlkit.training.task_cosine import gramian_cosines

MAX_GROUPING_TASKS = 10
"""The most tasks :func:`best_groupings` searches exhaustively (Bell(10) = 115 975 partitions)."""


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
    training (a :class:`~mtlkit.training.probes.StepProbe`; pass it to ``Trainer`` or
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


@dataclass(frozen=True)
class Grouping:
    """A partition of the tasks into groups (one network each) and its total affinity score."""

    groups: tuple[tuple[str, ...], ...]
    score: float


def grouping_score(affinity: Sequence[Sequence[float]], groups: Sequence[Sequence[int]]) -> float:
    """The mean over tasks j of the mean affinity ``Z[i][j]`` onto j from the other members i of
    j's group (0 for a task alone)."""
    total = 0.0
    for group in groups:
        if len(group) > 1:
            for j in group:
                total += sum(affinity[i][j] for i in group if i != j) / (len(group) - 1)
    return total / len(affinity)


def best_groupings(affinity: Sequence[Sequence[float]], names: Sequence[str]) -> list[Grouping]:
    """For each number of networks n = 1 … K, the partition into n groups with the highest
    :func:`grouping_score` (the first found on ties), searched exhaustively.

    Raises:
        ValueError: ``affinity`` is not K×K for the K ``names``, or K > :data:`MAX_GROUPING_TASKS`.
    """
    size = len(names)
    if len(affinity) != size or any(len(row) != size for row in affinity):
        raise ValueError(f"affinity must be {size}×{size}, one row and column per task.")
    if size > MAX_GROUPING_TASKS:
        raise ValueError(
            f"an exhaustive grouping search covers at most {MAX_GROUPING_TASKS} tasks, got {size}."
        )
    best: dict[int, Grouping] = {}
    for partition in _partitions(list(range(size))):
        score = grouping_score(affinity, partition)
        count = len(partition)
        if count not in best or score > best[count].score:
            groups = tuple(tuple(names[i] for i in group) for group in partition)
            best[count] = Grouping(groups, score)
    return [best[count] for count in sorted(best)]


def suggested_grouping(groupings: Sequence[Grouping]) -> Grouping:
    """The best of :func:`best_groupings`' partitions; fewer networks on ties."""
    return max(groupings, key=lambda grouping: (grouping.score, -len(grouping.groups)))


def _partitions(items: list[int]) -> Iterator[list[list[int]]]:
    """Every set partition of ``items`` (the first item's group is built first)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _partitions(rest):
        yield [[first], *partition]
        for index in range(len(partition)):
            yield [*partition[:index], [first, *partition[index]], *partition[index + 1 :]]
