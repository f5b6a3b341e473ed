"""The evaluation pass: every task's metrics and mean loss of a model over batches, in the
training precision, optionally over noisy views; the same across processes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from mtlkit.data import Batch
from mtlkit.measure.precision import autocast_context, float32
from mtlkit.measure.views import Views
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task

__all__ = ["Reports", "evaluate", "evaluate_with_losses"]

Reports = dict[str, Any]
"""Task name → the report its metrics computed (e.g. a ``ClassificationReport``)."""


@torch.no_grad()
def evaluate_with_losses(
    model: MultiTaskModel,
    tasks: Sequence[Task],
    batches: Iterable[Batch],
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
    views: Views | None = None,
    precision: str = "fp32",
) -> tuple[Reports, dict[str, float]]:
    """Every task's metrics of ``model`` over ``batches``, and its mean loss per labelled row.

    The loss is the task's own (:meth:`Task.loss`, label smoothing included), averaged over every
    labelled row of ``batches``. Rows whose label a task lacks (``batch.masks``) are left out of
    that task's metrics and loss; a batch scores the tasks it has targets for (multi-input
    evaluation: each task on its own batches). The model is put in eval mode. Under
    ``torch.distributed`` each process passes its shard; the metrics (torchmetrics' sync) and the
    losses are summed over the processes. With ``views`` of more than one, each task's metrics
    score its outputs combined over M noisy views of each input
    (:class:`~mtlkit.measure.views.Views`), and its loss is the mean over the views. The forward
    pass runs in ``precision`` (see :mod:`mtlkit.training.precision`); metrics and losses read its
    outputs in float32.
    """
    model.eval()
    metrics = {task.name: task.metrics().to(device) for task in tasks}
    sums = torch.zeros(2, len(tasks), dtype=torch.float64, device=device)  # losses, rows
    generator = None
    if views is not None:
        views.check(tasks)
        generator = views.generator(device)
    for batch in batches:
        batch = batch.to(device, memory_format)
        with autocast_context(precision, device):
            if views is None:
                drawn = [model(batch.inputs)]
            else:
                drawn = views.draw(model, batch.inputs, generator)
        drawn = [{name: float32(out) for name, out in view.items()} for view in drawn]
        outputs = drawn[0] if views is None else views.combined(tasks, drawn)
        for k, task in enumerate(tasks):
            if task.name not in batch.targets:  # multi-input: each task on its own batches
                continue
            output, target = outputs[task.name], batch.targets[task.name]
            mask = batch.masks.get(task.name)
            metrics[task.name].update(output, target, mask)
            rows = len(target) if mask is None else mask.sum()
            loss = sum(task.loss(view[task.name], target, mask).double() for view in drawn)
            sums[0, k] += loss / len(drawn) * rows
            sums[1, k] += rows
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(sums)
    losses = (sums[0] / sums[1]).tolist()  # NaN for a task with no labelled row
    reports = {name: metric.compute() for name, metric in metrics.items()}
    return reports, {task.name: loss for task, loss in zip(tasks, losses)}


def evaluate(
    model: MultiTaskModel,
    tasks: Sequence[Task],
    batches: Iterable[Batch],
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
    views: Views | None = None,
    precision: str = "fp32",
) -> Reports:
    """Every task's metrics of ``model`` over ``batches`` (see :func:`evaluate_with_losses`)."""
    return evaluate_with_losses(model, tasks, batches, device, memory_format, views, precision)[0]
