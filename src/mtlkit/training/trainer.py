"""The training loop: one way through, the same for every method and architecture.

``batch → model.encode → model.decode → task losses → balancer.backward → optimizer.step``.
The loop names no balancing method and no architecture. A batch holds one input for every task,
or (multi-input) one input per task: then each task's inputs go through the shared trunk on their
own, and the balancer gets each task's own features, so that the per-task gradients of the shared
parameters come from each task's own batch.

A task whose batch has no labelled row (label masks) contributes a zero loss at that step; the
epoch's record counts such steps per task (``unlabelled_steps``), and its mean training loss is
over the steps where the task had labels.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mtlkit.balancing import Balancer
from mtlkit.data import Batch
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.tasks.metrics import nanmean
from mtlkit.training.probes import StepProbe, StepView
from mtlkit.training.task_cosine import CosineSample, TaskCosineRecorder

Reports = dict[str, Any]
"""Task name → the report its metrics computed (e.g. a ``ClassificationReport``)."""


@torch.no_grad()
def evaluate_with_losses(
    model: MultiTaskModel,
    tasks: Sequence[Task],
    batches: Iterable[Batch],
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[Reports, dict[str, float]]:
    """Every task's metrics of ``model`` over ``batches``, and its mean loss per labelled row.

    The loss is the task's own (:meth:`Task.loss`, label smoothing included), averaged over every
    labelled row of ``batches``. Rows whose label a task lacks (``batch.masks``) are left out of
    that task's metrics and loss; a batch scores the tasks it has targets for (multi-input
    evaluation: each task on its own batches). The model is put in eval mode.
    """
    model.eval()
    metrics = {task.name: task.metrics().to(device) for task in tasks}
    loss_sums = torch.zeros(len(tasks), dtype=torch.float64, device=device)
    counts = torch.zeros(len(tasks), dtype=torch.float64, device=device)
    for batch in batches:
        batch = batch.to(device, memory_format)
        outputs = model(batch.inputs)
        for k, task in enumerate(tasks):
            if task.name not in batch.targets:  # multi-input: each task on its own batches
                continue
            output, target = outputs[task.name], batch.targets[task.name]
            mask = batch.masks.get(task.name)
            metrics[task.name].update(output, target, mask)
            rows = len(target) if mask is None else mask.sum()
            loss_sums[k] += task.loss(output, target, mask).double() * rows
            counts[k] += rows
    losses = (loss_sums / counts).tolist()  # NaN for a task with no labelled row
    reports = {name: metric.compute() for name, metric in metrics.items()}
    return reports, {task.name: loss for task, loss in zip(tasks, losses)}


def evaluate(
    model: MultiTaskModel,
    tasks: Sequence[Task],
    batches: Iterable[Batch],
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Reports:
    """Every task's metrics of ``model`` over ``batches`` (the model is put in eval mode).

    Rows whose label a task lacks (``batch.masks``) are left out of that task's metrics; a batch
    scores the tasks it has targets for (multi-input evaluation: each task on its own batches).
    """
    return evaluate_with_losses(model, tasks, batches, device, memory_format)[0]


class DivergedError(RuntimeError):
    """Training produced a non-finite loss."""


@dataclass
class EpochRecord:
    """What one epoch did: mean training losses, applied task weights, validation metrics, and
    per task the steps whose batch had no labelled row for it (zero loss there).

    ``step_seconds`` is the training pass's time divided by its steps (validation excluded);
    ``task_cosine`` the mean gradient cosine per pair of tasks over the epoch's recorded steps
    (None unless the trainer records them, see :class:`TaskCosineRecorder`).
    """

    epoch: int
    train_loss: dict[str, float]
    task_weights: dict[str, float] | None
    val: dict[str, dict[str, float]] | None
    score: float | None
    lr: float
    seconds: float
    unlabelled_steps: dict[str, int] = field(default_factory=dict)
    step_seconds: float | None = None
    task_cosine: dict[str, float] | None = None

    def brief(self, metric: str | Mapping[str, str] = "accuracy") -> dict[str, float | int | None]:
        """The few columns a report shows: losses, one validation metric per task (``metric``,
        or task name -> its metric), time."""
        row: dict[str, float | int | None] = {"epoch": self.epoch, "lr": self.lr}
        row.update({f"{t} loss": v for t, v in self.train_loss.items()})
        for t, m in (self.val or {}).items():
            name = metric if isinstance(metric, str) else metric[t]
            row[f"{t} val {name}"] = m.get(name)
        row["seconds"] = round(self.seconds, 1)
        return row

    def flat(self) -> dict[str, float | int | None]:
        """One flat row (for CSV and TensorBoard)."""
        row: dict[str, float | int | None] = {"epoch": self.epoch, "lr": self.lr}
        row.update({f"train/{t}/loss": v for t, v in self.train_loss.items()})
        row.update({f"train/{t}/unlabelled_steps": n for t, n in self.unlabelled_steps.items()})
        for t, w in (self.task_weights or {}).items():
            row[f"train/{t}/weight"] = w
        for pair, cosine in (self.task_cosine or {}).items():
            row[f"train/cosine/{pair}"] = cosine
        for t, metrics in (self.val or {}).items():
            row.update({f"val/{t}/{k}": v for k, v in metrics.items()})
        row["val/score"] = self.score
        row["seconds"] = self.seconds
        row["step_seconds"] = self.step_seconds
        return row


@dataclass
class FitResult:
    """The epoch history and the epoch whose weights were kept (best on validation, or last).

    ``best_score`` is that epoch's validation score (:meth:`Trainer.selection_score`; None
    without validation), ``task_cosines`` the recorded gradient cosines (empty unless asked for).
    """

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float | None = None
    task_cosines: list[CosineSample] = field(default_factory=list)

    @property
    def step_seconds(self) -> float:
        """The median over epochs of the seconds per training step."""
        return statistics.median(record.step_seconds for record in self.history)


class Trainer:
    """Trains a :class:`MultiTaskModel` on its tasks with one balancer.

    Args:
        model: the multi-task network.
        tasks: the tasks, in the order the balancer sees their losses.
        balancer: turns the task losses into gradients (see :mod:`mtlkit.balancing`).
        optimizer: steps the model's (and the balancer's own) parameters.
        scheduler: a per-epoch learning-rate schedule, or None.
        device: where to train.
        channels_last: store images and conv weights channels-last (faster convolutions on CPU).
        progress: show a progress bar with per-task running losses (main process, terminals only).
        task_cosine_every: every this many steps, record the cosines between the task gradients
            on the shared parameters (K extra backward passes on those steps); 0: never.
        probes: further measurements taken on the steps they are due for (see
            :mod:`mtlkit.training.probes`); they never change the update.
    """

    def __init__(
        self,
        model: MultiTaskModel,
        tasks: Sequence[Task],
        balancer: Balancer,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        *,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        progress: bool = True,
        task_cosine_every: int = 0,
        probes: Sequence[StepProbe] = (),
    ) -> None:
        missing = [t.name for t in tasks if t.name not in model.task_names]
        if missing:
            raise ValueError(
                f"the model has no head for task(s) {missing}; heads: {model.task_names}."
            )
        if getattr(balancer, "on_features", False) and not model.shared_representation:
            raise ValueError(
                f"{type(balancer).__name__} works on one shared representation that every task "
                f"reads, and {type(model).__name__} has none (each task reads features of its "
                "own); use a method on the shared parameters, or hard sharing."
            )
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.balancer = balancer.to(self.device)
        self.tasks = list(tasks)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.progress = progress
        self.unlabelled_steps: dict[str, int] = {}
        """Per task, the steps of the last epoch whose batch had no labelled row for it."""
        self.cosines = None
        if task_cosine_every > 0 and len(self.tasks) > 1:
            self.cosines = TaskCosineRecorder([t.name for t in self.tasks], task_cosine_every)
        self.probes = [*probes, *([self.cosines] if self.cosines is not None else [])]
        self.steps = 0
        self.epoch = 0

    def train_step(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """One optimisation step; returns the detached (K,) losses and the applied weights."""
        self.steps += 1
        batch = batch.to(self.device, self.memory_format)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        features = self.model.encode(batch.inputs)
        outputs = self.model.decode(features)
        losses = [
            task.loss(outputs[task.name], batch.targets[task.name], batch.masks.get(task.name))
            for task in self.tasks
        ]
        if not isinstance(features, Tensor):  # multi-input: each task's own features
            features = [features[task.name] for task in self.tasks]
        due = [probe for probe in self.probes if probe.due(self.steps)]
        if due:
            lr = self.optimizer.param_groups[0]["lr"]
            view = StepView(
                self.steps, self.epoch, self.model, self.tasks, batch, features, losses, lr
            )
            for probe in due:
                probe.record(view)
        info = self.balancer.backward(
            losses, shared_params=self.model.shared_parameters(), features=features
        )
        self.optimizer.step()
        return torch.stack([loss.detach() for loss in losses]), info.weights

    def train_epoch(self, batches: Iterable[Batch], epoch: int) -> tuple[Tensor, Tensor | None]:
        """One pass over ``batches``; returns the mean (K,) losses (over the steps where each task
        had a labelled row) and mean applied weights. The steps without a labelled row are
        counted in :attr:`unlabelled_steps`."""
        self.epoch = epoch
        loss_sum = torch.zeros(len(self.tasks), device=self.device)
        unlabelled = torch.zeros(len(self.tasks), dtype=torch.int64)
        weight_sum: Tensor | None = None
        steps = 0
        bar = tqdm(
            batches, desc=f"epoch {epoch}", leave=False, disable=None if self.progress else True
        )
        for batch in bar:
            losses, weights = self.train_step(batch)
            unlabelled += self._unlabelled(batch)
            loss_sum += losses
            if weights is not None:
                weight_sum = weights.clone() if weight_sum is None else weight_sum + weights
            steps += 1
            if self.progress and steps % 20 == 0:
                mean = (loss_sum / steps).tolist()
                bar.set_postfix({t.name: f"{v:.3f}" for t, v in zip(self.tasks, mean)})
        if steps == 0:
            raise ValueError("the training split yields no batch; lower batch_size or add data.")
        self.unlabelled_steps = dict(zip((t.name for t in self.tasks), unlabelled.tolist()))
        mean_losses = loss_sum / (steps - unlabelled).clamp(min=1).to(self.device)
        if not torch.isfinite(mean_losses).all():
            bad = [t.name for t, v in zip(self.tasks, mean_losses.tolist()) if not math.isfinite(v)]
            raise DivergedError(
                f"epoch {epoch}: the loss of task(s) {bad} is not finite; lower the learning "
                "rate or try another balancing method."
            )
        self.balancer.epoch_end()
        return mean_losses, (None if weight_sum is None else weight_sum / steps)

    def _unlabelled(self, batch: Batch) -> Tensor:
        """(K,) 1 for each task whose targets in ``batch`` are all masked out, else 0."""
        return torch.tensor(
            [
                task.name in batch.masks and not bool(batch.masks[task.name].any())
                for task in self.tasks
            ],
            dtype=torch.int64,
        )

    def evaluate(self, batches: Iterable[Batch]) -> Reports:
        """Every task's metrics over ``batches``."""
        return evaluate(self.model, self.tasks, batches, self.device, self.memory_format)

    def evaluate_with_losses(self, batches: Iterable[Batch]) -> tuple[Reports, dict[str, float]]:
        """Every task's metrics and mean loss over ``batches``."""
        return evaluate_with_losses(
            self.model, self.tasks, batches, self.device, self.memory_format
        )

    def selection_score(self, reports: Reports) -> float:
        """Mean over tasks of the primary metric, signed so that higher is better and on a
        common scale (:meth:`~mtlkit.tasks.Task.selection_value`: a lower-is-better metric is
        negated, a regression error is in units of the target's standard deviation). A task
        whose metric is undefined on these reports (NaN, e.g. AUROC when validation has one
        label) is left out; NaN when every task's is."""
        return nanmean([task.selection_value(reports[task.name]) for task in self.tasks])

    def fit(
        self,
        make_train_batches: Callable[[int], Iterable[Batch]],
        epochs: int,
        make_val_batches: Callable[[], Iterable[Batch]] | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
    ) -> FitResult:
        """Train for ``epochs`` epochs and keep the best validation epoch's weights.

        Args:
            make_train_batches: the training batches of an epoch, given the epoch number (so the
                data order is a function of the seed and the epoch).
            epochs: how many epochs.
            make_val_batches: validation batches; model selection never looks at test data.
                Without them, the last epoch is kept.
            on_epoch: called with each epoch's record (logging, checkpoints).
        """
        result = FitResult()
        best_score = -math.inf
        best_state = None
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            steps_before = self.steps
            mean_losses, mean_weights = self.train_epoch(make_train_batches(epoch), epoch)
            step_seconds = (time.perf_counter() - start) / (self.steps - steps_before)
            lr = self.optimizer.param_groups[0]["lr"]
            if self.scheduler is not None:
                self.scheduler.step()
            val, score = None, None
            if make_val_batches is not None:
                reports = self.evaluate(make_val_batches())
                val = {name: report.summary() for name, report in reports.items()}
                score = self.selection_score(reports)
                if score > best_score:
                    best_score, result.best_epoch, result.best_score = score, epoch, score
                    best_state = copy.deepcopy(self.model.state_dict())
            names = [t.name for t in self.tasks]
            record = EpochRecord(
                epoch=epoch,
                train_loss=dict(zip(names, mean_losses.tolist())),
                task_weights=None
                if mean_weights is None
                else dict(zip(names, mean_weights.tolist())),
                val=val,
                score=score,
                lr=lr,
                seconds=time.perf_counter() - start,
                unlabelled_steps=dict(self.unlabelled_steps),
                step_seconds=step_seconds,
                task_cosine=None if self.cosines is None else self.cosines.epoch_mean(epoch),
            )
            result.history.append(record)
            if on_epoch is not None:
                on_epoch(record)
        if best_state is None:
            result.best_epoch = epochs
        else:
            self.model.load_state_dict(best_state)
        if self.cosines is not None:
            result.task_cosines = list(self.cosines.samples)
        return result
