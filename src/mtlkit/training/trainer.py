"""The training loop: one way through, the same for every method and architecture.

``batch → model.encode → model.decode → task losses → balancer.backward → optimizer.step``.
The loop names no balancing method and no architecture. A batch holds one input for every task,
or (multi-input) one input per task: then each task's inputs go through the shared trunk on their
own, and the balancer gets each task's own features, so that the per-task gradients of the shared
parameters come from each task's own batch.

A task whose batch has no labelled row (label masks) contributes a zero loss at that step; the
epoch's record counts such steps per task (``unlabelled_steps``), and its mean training loss is
over the steps where the task had labels.

Across processes (``replicas``, from :func:`mtlkit.training.distributed.process_group`) the model
runs under ``DistributedDataParallel``. A loss weighting back-propagates one scalar and DDP
averages its gradients over the ranks, overlapped with the backward pass; a gradient method's
forward runs under ``no_sync`` and the balancer's engine averages the per-task Jacobian (and every
other gradient it writes) itself, before aggregating (see :mod:`mtlkit.balancing.replicas`). The
reported losses are replica means; with label masks, each rank's task loss is weighted by its
share of the labelled rows, so the mean over ranks is the mean over every labelled row.

The practitioner's techniques hook in without the loop naming any: input noise on the training
batches (:class:`~mtlkit.training.noise.InputNoise`), teachers whose outputs the tasks distil
(:mod:`mtlkit.training.distill`), per-row loss weights carried by the batch, and L1/L2 penalties
added after the balancer (:class:`~mtlkit.training.penalties.ParameterPenalties`, their values
in the epoch's record).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import signal
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from mtlkit.balancing import Balancer, GradientAggregator, Need
from mtlkit.data import Batch
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.tasks.metrics import nanmean
from mtlkit.training.compiled import compile_encoder
from mtlkit.training.distill import Teacher
from mtlkit.training.distributed import ProcessGroupReplicas
from mtlkit.training.finite import DivergedError, NonFiniteGuard, gradients_finite
from mtlkit.training.noise import InputNoise, noise_generator
from mtlkit.training.optim import learning_rates
from mtlkit.training.penalties import ParameterPenalties
from mtlkit.training.precision import LossScale, autocast_context, check_precision
from mtlkit.training.probes import StepProbe, StepView
from mtlkit.training.records import EpochRecord
from mtlkit.training.signals import StopSignals, TrainingInterrupted
from mtlkit.training.state import FitProgress
from mtlkit.training.task_cosine import CosineSample, TaskCosineRecorder
from mtlkit.training.views import Views

__all__ = ["FitResult", "Trainer", "evaluate", "evaluate_with_losses"]

Reports = dict[str, Any]
"""Task name → the report its metrics computed (e.g. a ``ClassificationReport``)."""

ON_NONFINITE = ("stop", "skip")
"""What a step with a non-finite loss or gradient does: stop the run, or skip the step."""


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
    (:class:`~mtlkit.training.views.Views`), and its loss is the mean over the views. The forward
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
        drawn = [{name: _float32(out) for name, out in view.items()} for view in drawn]
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


def _float32(tensor: Tensor) -> Tensor:
    """A reduced-precision floating tensor in float32; any other tensor as it is."""
    if tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < 32:
        return tensor.float()
    return tensor


@dataclass
class FitResult:
    """The epoch history, the epoch whose weights were kept (best on validation, or last), and
    the steps skipped for non-finite values.

    ``best_score`` is that epoch's validation score (:meth:`Trainer.selection_score`; None
    without validation), ``task_cosines`` the recorded gradient cosines (empty unless asked for;
    after a resume, those recorded since).
    """

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    skipped: int = 0
    best_score: float | None = None
    task_cosines: list[CosineSample] = field(default_factory=list)

    @property
    def step_seconds(self) -> float:
        """The median over epochs of the seconds per training step."""
        return statistics.median(
            record.step_seconds for record in self.history if record.step_seconds is not None
        )


class _Step(NamedTuple):
    losses: Tensor
    weights: Tensor | None
    flags: Tensor
    applied: bool
    unlabelled: Tensor
    """(K,) int64: 1 for each task with no labelled row in the (global) batch."""


class _EncodeDecode(nn.Module):
    """The model's forward pass returning the shared features too (what DDP wraps)."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, inputs: Tensor | dict[str, Tensor]
    ) -> tuple[Tensor | dict[str, Tensor], dict[str, Tensor]]:
        features = self.model.encode(inputs)
        return features, self.model.decode(features)


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
        precision: ``"fp32"``, ``"bf16"`` (autocast on CPU and CUDA) or ``"fp16"`` (autocast with a
            dynamic loss scale, CUDA only, loss weightings only; a step whose scaled gradients
            overflow is skipped); see :mod:`mtlkit.training.precision`. The balancer's backward
            and its solvers run in float32/float64 either way.
        compile: run the shared encoder through ``torch.compile`` (compiled at the first step;
            see :mod:`mtlkit.training.compiled`).
        progress: show a progress bar with per-task running losses (main process, terminals only).
        replicas: the processes to train across (``None``: this one alone).
        check_finite_every: steps between two reads of the non-finite flags (one host sync each);
            a non-finite step is named exactly, at most this many steps after it happened.
        on_nonfinite: ``"stop"`` (raise :class:`DivergedError`) or ``"skip"`` (leave the model,
            optimizer and balancer as they were before the step and count it; this reads the flags
            at every step).
        task_cosine_every: every this many steps, record the cosines between the task gradients
            on the shared parameters (K extra backward passes on those steps); 0: never.
        probes: further measurements taken on the steps they are due for (see
            :mod:`mtlkit.training.probes`); they never change the update.
        noise: noise drawn on every training batch's inputs (never in evaluation).
        seed: seeds the noise's generator.
        teachers: give the tasks they teach soft labels (distillation); updated after each
            applied step.
        penalties: L1/L2 penalties whose gradients join the balanced gradient before each step.
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
        precision: str = "fp32",
        compile: bool = False,
        progress: bool = True,
        replicas: ProcessGroupReplicas | None = None,
        check_finite_every: int = 50,
        on_nonfinite: str = "stop",
        task_cosine_every: int = 0,
        probes: Sequence[StepProbe] = (),
        noise: InputNoise | None = None,
        seed: int = 0,
        teachers: Sequence[Teacher] = (),
        penalties: ParameterPenalties | None = None,
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
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}.")
        self.device = torch.device(device)
        check_precision(precision, self.device)
        if precision == "fp16" and isinstance(balancer, GradientAggregator):
            raise ValueError(
                f"train.precision 'fp16' scales the gradients by a loss scale, which changes what "
                f"the gradient method {type(balancer).__name__} computes from them: use 'bf16' "
                "(same speed on recent GPUs, no loss scale) or a loss weighting."
            )
        self.precision = precision
        self.loss_scale = LossScale() if precision == "fp16" else None
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        if compile:
            compile_encoder(self.model)
        self.balancer = balancer.to(self.device)
        self.balancer.replicas = replicas
        self.tasks = list(tasks)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.progress = progress
        self.replicas = replicas
        self.on_nonfinite = on_nonfinite
        self.guard = NonFiniteGuard([t.name for t in self.tasks], check_finite_every, self.device)
        self._epoch_start = time.perf_counter()
        self._loose_steps = 0
        forward = _EncodeDecode(self.model)
        self._forward: nn.Module = forward
        if replicas is not None:
            self._forward = DistributedDataParallel(
                forward, device_ids=[self.device] if self.device.type == "cuda" else None
            )
        self.cosines = None
        if task_cosine_every > 0 and len(self.tasks) > 1:
            self.cosines = TaskCosineRecorder([t.name for t in self.tasks], task_cosine_every)
        self.probes = [*probes, *([self.cosines] if self.cosines is not None else [])]
        self.noise = noise if noise is not None and noise.active else None
        self.noise_generator = noise_generator(seed, self.device)
        """The generator of the training noise."""
        self.teachers = [teacher.to(self.device) for teacher in teachers]
        self.penalties = penalties if penalties is not None and penalties.active else None
        self.penalty_values: dict[str, float] = {}
        """Per penalised group, the mean penalty over the last epoch's applied steps."""
        self._penalty_sums: dict[str, float] = {}
        self._penalty_steps = 0

    def release_replicas(self) -> None:
        """Go on as a single process: drop the ``DistributedDataParallel`` wrapper and the
        replicas, and free the wrapper now. Call it before the process group is destroyed
        (``mtlkit.workflows.train`` does).

        DDP's reducer holds the process group, and the wrapper may sit in a reference cycle that
        only the garbage collector frees. Freed after the group was destroyed, the reducer would
        be the group's last holder, and torch's gloo backend would then join its worker threads
        while this thread holds Python's GIL, which a worker may still need to free a finished
        collective: a hang at the end of a run, seen under load. Freed here, the reducer lets go
        of a group that is still registered, and the group's own destruction releases the GIL.
        """
        if isinstance(self._forward, DistributedDataParallel):
            self._forward = self._forward.module
            gc.collect()
        self.replicas = None
        self.balancer.replicas = None

    def _gradient_sync(self) -> contextlib.AbstractContextManager:
        """DDP averages the gradients of one backward pass (loss weightings); a gradient
        method's engine averages what it writes, so DDP must stay out (``no_sync``)."""
        if isinstance(self._forward, DistributedDataParallel) and (
            self.balancer.needs is not Need.LOSSES
        ):
            return self._forward.no_sync()
        return contextlib.nullcontext()

    def _losses(
        self, outputs: dict[str, Tensor], batch: Batch, soft: dict[str, Tensor]
    ) -> tuple[list[Tensor], Tensor]:
        """The task losses (with the batch's row weights and the teachers' outputs ``soft``), and
        (K,) 1 for each task without a labelled row in the batch (of every process together).
        Across processes with label masks, each loss is weighted by this rank's share of the
        task's labelled rows (N·nᵣ/Σn), so that their mean over ranks is the mean over every
        labelled row of the global batch."""
        losses = []
        for task in self.tasks:
            # only what the batch has: a task class of one's own without these keywords still
            # trains when it uses neither
            extra = {"weights": batch.weights.get(task.name), "teacher": soft.get(task.name)}
            loss = task.loss(
                outputs[task.name],
                batch.targets[task.name],
                batch.masks.get(task.name),
                **{key: value for key, value in extra.items() if value is not None},
            )
            losses.append(_float32(loss))
        like = {"dtype": losses[0].dtype, "device": losses[0].device}
        counts = torch.stack(
            [
                batch.masks[t.name].sum().to(**like)
                if t.name in batch.masks
                else torch.tensor(len(batch.targets[t.name]), **like)
                for t in self.tasks
            ]
        )
        if self.replicas is None or not batch.masks:
            return losses, (counts == 0).long()
        mean = counts.clone()
        self.replicas.mean_(mean)
        share = torch.where(mean > 0, counts / mean.clamp(min=1), torch.ones_like(counts))
        return [loss * share[k] for k, loss in enumerate(losses)], (mean == 0).long()

    def _parameters(self) -> list[Tensor]:
        return [*self.model.parameters(), *self.balancer.parameters()]

    def _step(self, batch: Batch, number: int, epoch: int) -> _Step:
        """Step ``number`` of the run (from 1), in ``epoch``."""
        batch = batch.to(self.device, self.memory_format)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        inputs = batch.inputs
        if self.noise is not None:
            inputs = self.noise(inputs, [task.name for task in self.tasks], self.noise_generator)
        with autocast_context(self.precision, self.device):
            with self._gradient_sync():
                features, outputs = self._forward(inputs)
            if self.loss_scale is not None:
                outputs = self.loss_scale.apply(outputs)
            soft: dict[str, Tensor] = {}
            for teacher in self.teachers:
                soft.update(teacher.outputs(inputs))
            losses, unlabelled = self._losses(outputs, batch, soft)
        if not isinstance(features, Tensor):  # multi-input: each task's own features
            features = [features[task.name] for task in self.tasks]
        due = [probe for probe in self.probes if probe.due(number)]
        if due:
            lr = self.optimizer.param_groups[0]["lr"]
            view = StepView(number, epoch, self.model, self.tasks, batch, features, losses, lr)
            for probe in due:
                probe.record(view)
        before = copy.deepcopy(self.balancer.state_dict()) if self.on_nonfinite == "skip" else None
        # outside autocast: the per-task gradients, the Gramian and the solvers in float32/64
        info = self.balancer.backward(
            losses, shared_params=self.model.shared_parameters(), features=features
        )
        reported = torch.stack([loss.detach() for loss in losses])
        if self.replicas is not None:
            self.replicas.mean_(reported)
        if self.loss_scale is not None and not self._unscaled():  # fp16 overflow: skip
            finite = torch.ones((), dtype=torch.bool, device=reported.device)
            self.optimizer.zero_grad(set_to_none=True)
            flags = self.guard.step_flags(reported, finite)
            return _Step(reported, info.weights, flags, False, unlabelled)
        penalty = {} if self.penalties is None else self.penalties.apply()
        flags = self.guard.step_flags(reported, gradients_finite(self._parameters(), self.device))
        if before is not None and not bool(flags.all()):  # skip: undo the step's effects
            self.balancer.load_state_dict(before)
            self.optimizer.zero_grad(set_to_none=True)
            return _Step(reported, info.weights, flags, False, unlabelled)
        self.optimizer.step()
        for teacher in self.teachers:
            teacher.update(self.model)
        self._penalty_steps += 1
        for group, value in penalty.items():
            self._penalty_sums[group] = self._penalty_sums.get(group, 0.0) + value
        return _Step(reported, info.weights, flags, True, unlabelled)

    def _unscaled(self) -> bool:
        """fp16: divide the model's gradients by the loss scale and update the scale; whether
        they were finite (the step may be taken)."""
        assert self.loss_scale is not None
        finite = self.loss_scale.unscale(self.model)
        self.loss_scale.update()
        return finite

    def train_step(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """One optimisation step (outside :meth:`fit`, counted from 1 by the trainer); returns
        the detached (K,) losses and the applied weights."""
        self._loose_steps += 1
        step = self._step(batch, self._loose_steps, 0)
        return step.losses, step.weights

    def train_epoch(self, batches: Iterable[Batch], epoch: int) -> tuple[Tensor, Tensor | None]:
        """One pass over ``batches``; returns the mean (K,) losses (over the steps where each task
        had a labelled row) and mean applied weights."""
        progress = FitProgress()
        progress.start_epoch(epoch)
        self._train_batches(batches, progress)
        return self._end_epoch(progress)

    def _train_batches(
        self,
        batches: Iterable[Batch],
        progress: FitProgress,
        checkpoint: Callable[[FitProgress], None] | None = None,
        checkpoint_every: int = 0,
        stop: StopSignals | None = None,
    ) -> None:
        """Train on ``batches`` from ``progress``'s position, updating it step by step."""
        bar = tqdm(
            batches,
            desc=f"epoch {progress.epoch}",
            leave=False,
            disable=None if self.progress else True,
        )
        every = self.guard.every
        for batch in bar:
            step = self._step(batch, progress.global_step + 1, progress.epoch)
            progress.step += 1
            progress.global_step += 1
            if step.applied:
                self._add_to_sums(progress, step)
            else:
                progress.skipped += 1
            if self.on_nonfinite == "stop":
                self.guard.record(step.flags, f"step {progress.global_step} ({progress.label})")
            due = progress.global_step % every == 0
            if due:
                self.guard.check()
            if checkpoint is not None and checkpoint_every:
                if progress.global_step % checkpoint_every == 0:
                    self._checkpoint(checkpoint, progress)
            if self._stop_agreed(stop, due):
                self._stop(checkpoint, progress, stop)
            if self.progress and progress.counted and progress.step % 20 == 0:
                mean = (progress.loss_sum / progress.counted).tolist()
                bar.set_postfix({t.name: f"{v:.3f}" for t, v in zip(self.tasks, mean)})

    @staticmethod
    def _add_to_sums(progress: FitProgress, step: _Step) -> None:
        progress.counted += 1
        losses = step.losses
        progress.loss_sum = (
            losses.clone() if progress.loss_sum is None else progress.loss_sum + losses
        )
        progress.unlabelled = (
            step.unlabelled.clone()
            if progress.unlabelled is None
            else progress.unlabelled + step.unlabelled
        )
        if step.weights is not None:
            weights = step.weights.detach()
            progress.weight_sum = (
                weights.clone() if progress.weight_sum is None else progress.weight_sum + weights
            )

    def _end_epoch(self, progress: FitProgress) -> tuple[Tensor, Tensor | None]:
        """Check the epoch's flags, end it for the balancer; the mean losses (over the steps
        where each task had a labelled row) and the mean weights."""
        self.guard.check()
        if progress.step == 0:
            raise ValueError("the training split yields no batch; lower batch_size or add data.")
        if progress.counted == 0:
            raise DivergedError(
                f"epoch {progress.epoch}: every step had a non-finite loss or gradient and was "
                "skipped; lower the learning rate or try another balancing method."
            )
        self.balancer.epoch_end()
        steps = max(self._penalty_steps, 1)
        self.penalty_values = {group: v / steps for group, v in self._penalty_sums.items()}
        self._penalty_sums, self._penalty_steps = {}, 0
        weights = progress.weight_sum
        labelled = (progress.counted - progress.unlabelled).clamp(min=1)
        return progress.loss_sum / labelled, (
            None if weights is None else weights / progress.counted
        )

    def _checkpoint(self, checkpoint: Callable[[FitProgress], None], progress: FitProgress) -> None:
        """Hand ``progress`` to ``checkpoint`` once every flag so far has been read good."""
        self.guard.check()
        progress.epoch_seconds = time.perf_counter() - self._epoch_start
        checkpoint(progress)

    def _stop_agreed(self, stop: StopSignals | None, due: bool) -> bool:
        """Whether to stop now: at every step alone; across processes, at the steps where the
        flags are read, once any process received a signal."""
        if stop is None:
            return False
        if self.replicas is None:
            return stop.requested()
        return due and self.replicas.any(stop.requested())

    def _stop(
        self,
        checkpoint: Callable[[FitProgress], None] | None,
        progress: FitProgress,
        stop: StopSignals,
    ) -> None:
        if checkpoint is not None:
            self._checkpoint(checkpoint, progress)
        signum = stop.received or signal.SIGTERM  # only another process received one
        raise TrainingInterrupted(f"stopped at {progress.label} on signal {signum}", signum)

    def evaluate(self, batches: Iterable[Batch]) -> Reports:
        """Every task's metrics over ``batches``."""
        return evaluate(
            self.model,
            self.tasks,
            batches,
            self.device,
            self.memory_format,
            precision=self.precision,
        )

    def evaluate_with_losses(self, batches: Iterable[Batch]) -> tuple[Reports, dict[str, float]]:
        """Every task's metrics and mean loss over ``batches``."""
        return evaluate_with_losses(
            self.model,
            self.tasks,
            batches,
            self.device,
            self.memory_format,
            precision=self.precision,
        )

    def selection_score(self, reports: Reports) -> float:
        """Mean over tasks of the primary metric, signed so that higher is better and on a
        common scale (:meth:`~mtlkit.tasks.Task.selection_value`: a lower-is-better metric is
        negated, a regression error is in units of the target's standard deviation). A task
        whose metric is undefined on these reports (NaN, e.g. AUROC when validation has one
        label) is left out; NaN when every task's is."""
        return nanmean([task.selection_value(reports[task.name]) for task in self.tasks])

    def state_dict(self, progress: FitProgress) -> dict[str, Any]:
        """The whole training state at ``progress``: model, optimizer, scheduler, balancer, the
        progress (position, sums, best-so-far selection, history), the noise generator and the
        teachers (an averaged model), as tensors and plain values. The global random number
        generators are per process (:mod:`mtlkit.training.state`)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "balancer": self.balancer.state_dict(),
            "progress": progress.state_dict(),
            "noise": self.noise_generator.get_state(),
            "teachers": [teacher.state_dict() for teacher in self.teachers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> FitProgress:
        """Load a :meth:`state_dict`; returns the progress to pass to :meth:`fit`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.balancer.load_state_dict(state["balancer"])
        if "noise" in state:
            self.noise_generator.set_state(state["noise"])
        for teacher, saved in zip(self.teachers, state.get("teachers", ())):
            teacher.load_state_dict(saved)
        return FitProgress.from_state_dict(state["progress"], self.device)

    def fit(
        self,
        make_train_batches: Callable[[int], Iterable[Batch]],
        epochs: int,
        make_val_batches: Callable[[], Iterable[Batch]] | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        *,
        progress: FitProgress | None = None,
        checkpoint: Callable[[FitProgress], None] | None = None,
        checkpoint_every: int = 0,
        stop: StopSignals | None = None,
    ) -> FitResult:
        """Train for ``epochs`` epochs and keep the best validation epoch's weights.

        Args:
            make_train_batches: the training batches of an epoch, given the epoch number (so the
                data order is a function of the seed and the epoch).
            epochs: how many epochs.
            make_val_batches: validation batches; model selection never looks at test data.
                Without them, the last epoch is kept.
            on_epoch: called with each epoch's record (logging).
            progress: where to continue (from :meth:`load_state_dict`); ``None``: the start.
            checkpoint: called with the progress (see :meth:`state_dict`) at the end of every
                epoch, every ``checkpoint_every`` steps (0: never within an epoch) and before
                stopping on a signal; only after every step so far was read finite.
            checkpoint_every: steps between two checkpoints within an epoch.
            stop: the signals that ask the run to stop (checkpoint, then
                :class:`TrainingInterrupted`).
        """
        progress = progress or FitProgress()
        while progress.epoch <= epochs:
            epoch = progress.epoch
            self._epoch_start = time.perf_counter() - progress.epoch_seconds
            batches = islice(make_train_batches(epoch), progress.step, None)
            steps_before, pass_start = progress.global_step, time.perf_counter()
            self._train_batches(batches, progress, checkpoint, checkpoint_every, stop)
            steps = progress.global_step - steps_before
            step_seconds = (time.perf_counter() - pass_start) / steps if steps else None
            unlabelled = progress.unlabelled
            mean_losses, mean_weights = self._end_epoch(progress)
            lr = self.optimizer.param_groups[0]["lr"]
            lrs = learning_rates(self.optimizer)
            if self.scheduler is not None:
                self.scheduler.step()
            val, score = None, None
            if make_val_batches is not None:
                reports = self.evaluate(make_val_batches())
                val = {name: report.summary() for name, report in reports.items()}
                score = self.selection_score(reports)
                if score > progress.best_score:
                    progress.best_score, progress.best_epoch = score, epoch
                    progress.best_model = copy.deepcopy(self.model.state_dict())
            names = [t.name for t in self.tasks]
            skipped_before = sum(record.skipped for record in progress.history)
            record = EpochRecord(
                epoch=epoch,
                train_loss=dict(zip(names, mean_losses.tolist())),
                task_weights=None
                if mean_weights is None
                else dict(zip(names, mean_weights.tolist())),
                val=val,
                score=score,
                lr=lr,
                seconds=time.perf_counter() - self._epoch_start,
                skipped=progress.skipped - skipped_before,
                unlabelled_steps=dict(
                    zip(names, [0] * len(names) if unlabelled is None else unlabelled.tolist())
                ),
                lrs=lrs if len(lrs) > 1 else {},
                step_seconds=step_seconds,
                task_cosine=None if self.cosines is None else self.cosines.epoch_mean(epoch),
                penalties=dict(self.penalty_values),
            )
            progress.history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            progress.start_epoch(epoch + 1)
            self._epoch_start = time.perf_counter()
            if checkpoint is not None:
                self._checkpoint(checkpoint, progress)
            if self._stop_agreed(stop, due=True):
                self._stop(None, progress, stop)
        if progress.best_model is None:
            best_epoch = epochs
        else:
            best_epoch = progress.best_epoch
            self.model.load_state_dict(progress.best_model)
        return FitResult(
            list(progress.history),
            best_epoch,
            progress.skipped,
            None if progress.best_model is None else progress.best_score,
            [] if self.cosines is None else list(self.cosines.samples),
        )
