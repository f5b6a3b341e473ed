"""The training step every method and architecture shares: forward, task losses,
``balancer.backward``. The hooks (:mod:`mtlkit.training.hooks`) are called around it; the
optimizer step and what decides it belong to the loop (:class:`~mtlkit.training.Trainer`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtlkit.balancing import Balancer
from mtlkit.data import Batch
from mtlkit.measure.precision import float32
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.training.distributed import ProcessGroupReplicas
from mtlkit.training.hooks import Hook, StepState

__all__ = ["task_losses", "training_step"]


def training_step(
    forward: nn.Module,
    model: MultiTaskModel,
    tasks: Sequence[Task],
    balancer: Balancer,
    step: StepState,
    hooks: Sequence[Hook],
    replicas: ProcessGroupReplicas | None = None,
) -> None:
    """Forward ``step.inputs``, compute the task losses and let ``balancer`` write the
    gradients; fills ``step`` (outputs, features, losses, reported losses, weights).
    ``forward`` returns the shared features and the heads' outputs (``model``, or its DDP
    wrapper)."""
    with contextlib.ExitStack() as context:
        for hook in hooks:
            context.enter_context(hook.forward_context())
        for hook in hooks:
            hook.before_step(step)
        features, step.outputs = forward(step.inputs)
        for hook in hooks:
            hook.after_forward(step)
        step.losses, step.unlabelled = task_losses(
            tasks, step.outputs, step.batch, step.soft, replicas
        )
    if not isinstance(features, Tensor):  # multi-input: each task's own features
        features = [features[task.name] for task in tasks]
    step.features = features
    for hook in hooks:
        hook.before_backward(step)
    # outside autocast: the per-task gradients, the Gramian and the solvers in float32/64
    info = balancer.backward(
        step.losses, shared_params=model.shared_parameters(), features=features
    )
    step.weights = info.weights
    step.reported = torch.stack([loss.detach() for loss in step.losses])
    if replicas is not None:
        replicas.mean_(step.reported)


def task_losses(
    tasks: Sequence[Task],
    outputs: dict[str, Tensor],
    batch: Batch,
    soft: dict[str, Tensor],
    replicas: ProcessGroupReplicas | None = None,
) -> tuple[list[Tensor], Tensor]:
    """The task losses (with the batch's row weights and the teachers' outputs ``soft``), and
    (K,) 1 for each task without a labelled row in the batch (of every process together).
    Across processes with label masks, each loss is weighted by this rank's share of the
    task's labelled rows (N·nᵣ/Σn), so that their mean over ranks is the mean over every
    labelled row of the global batch."""
    losses = []
    for task in tasks:
        # only what the batch has: a task class of one's own without these keywords still
        # trains when it uses neither
        extra = {"weights": batch.weights.get(task.name), "teacher": soft.get(task.name)}
        loss = task.loss(
            outputs[task.name],
            batch.targets[task.name],
            batch.masks.get(task.name),
            **{key: value for key, value in extra.items() if value is not None},
        )
        losses.append(float32(loss))
    like = {"dtype": losses[0].dtype, "device": losses[0].device}
    counts = torch.stack(
        [
            batch.masks[t.name].sum().to(**like)
            if t.name in batch.masks
            else torch.tensor(len(batch.targets[t.name]), **like)
            for t in tasks
        ]
    )
    if replicas is None or not batch.masks:
        return losses, (counts == 0).long()
    mean = counts.clone()
    replicas.mean_(mean)
    share = torch.where(mean > 0, counts / mean.clamp(min=1), torch.ones_like(counts))
    return [loss * share[k] for k, loss in enumerate(losses)], (mean == 0).long()
