"""The training loop: one way through, the same for every method and architecture.

Each batch goes through one :func:`~mtlkit.training.step.training_step` (forward, task losses,
``balancer.backward``); the hooks (:mod:`mtlkit.training.hooks`) are called around it and decide
whether the optimizer steps. The loop names no balancing method, no architecture and no
optional technique: input noise, precision and the fp16 loss scale, teachers, penalties,
probes and task cosines, the non-finite guard, epoch metering, checkpoints and signals, model
selection and the processes training together (DDP) are each one hook, and a library user
passes hooks of their own (``Trainer(..., hooks=[...])``).

A batch holds one input for every task, or (multi-input) one input per task: then each task's
inputs go through the shared trunk on their own, and the balancer gets each task's own
features. A task whose batch has no labelled row (label masks) contributes a zero loss at that
step; the epoch's record counts such steps per task (``unlabelled_steps``), and its mean
training loss is over the steps where the task had labels. Across processes the reported
losses are replica means (see :mod:`mtlkit.training.hooks.ddp`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import torch
from torch import Tensor, nn

from mtlkit.balancing import Balancer, GradientAggregator
from mtlkit.data import Batch
from mtlkit.measure.evaluation_pass import Reports, evaluate_with_losses
from mtlkit.measure.noise import InputNoise
from mtlkit.measure.precision import check_precision
from mtlkit.measure.probes import StepProbe
from mtlkit.measure.records import EpochRecord
from mtlkit.measure.task_cosine import TaskCosineRecorder
from mtlkit.measure.views import Views
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.tasks.metrics import nanmean
from mtlkit.training.checkpoint import hook_states, load_hook_states
from mtlkit.training.compiled import compile_encoder
from mtlkit.training.distill import Teacher
from mtlkit.training.distributed import ProcessGroupReplicas
from mtlkit.training.finite import NonFiniteGuard
from mtlkit.training.hooks import Hook, StepState
from mtlkit.training.hooks.checkpoints import CheckpointHook
from mtlkit.training.hooks.ddp import DataParallelHook, EncodeDecode
from mtlkit.training.hooks.metering import EpochMeter
from mtlkit.training.hooks.noise import InputNoiseHook
from mtlkit.training.hooks.nonfinite import NonFiniteHook
from mtlkit.training.hooks.penalties import PenaltiesHook
from mtlkit.training.hooks.precision import PrecisionHook
from mtlkit.training.hooks.probes import ProbesHook
from mtlkit.training.hooks.selection import SelectionHook
from mtlkit.training.hooks.teachers import TeachersHook
from mtlkit.training.optim import learning_rates
from mtlkit.training.penalties import ParameterPenalties
from mtlkit.training.signals import StopSignals
from mtlkit.training.state import FitProgress, FitResult
from mtlkit.training.step import training_step

__all__ = ["FitResult", "Trainer"]


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
            its buffers, the optimizer and the balancer as they were before the step and count
            it; this reads the flags at every step).
        task_cosine_every: every this many steps, record the cosines between the task gradients
            on the shared parameters (K extra backward passes on those steps); 0: never.
        probes: further measurements taken on the steps they are due for (see
            :mod:`mtlkit.measure.probes`); they never change the update.
        noise: noise drawn on every training batch's inputs (never in evaluation).
        seed: seeds the noise's generator.
        teachers: give the tasks they teach soft labels (distillation); updated after each
            applied step.
        penalties: L1/L2 penalties whose gradients join the balanced gradient before each step.
        views: the noisy views validation scores over (as the test evaluation does).
        hooks: further hooks (:class:`~mtlkit.training.hooks.Hook`), called after the built-in
            ones at every point; their states are saved in the checkpoint by name.
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
        views: Views | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        _check_fit(model, tasks, balancer)
        self.device = torch.device(device)
        check_precision(precision, self.device)
        if precision == "fp16" and isinstance(balancer, GradientAggregator):
            raise ValueError(
                f"train.precision 'fp16' scales the gradients by a loss scale, which changes what "
                f"the gradient method {type(balancer).__name__} computes from them: use 'bf16' "
                "(same speed on recent GPUs, no loss scale) or a loss weighting."
            )
        self.precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        if compile:
            compile_encoder(self.model)
        self.balancer = balancer.to(self.device)
        self.balancer.replicas = replicas
        self.tasks = list(tasks)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.replicas = replicas
        self.views = views
        self.guard = NonFiniteGuard([t.name for t in self.tasks], check_finite_every, self.device)
        self._epoch_start = time.perf_counter()
        self._loose_steps = 0
        self.ddp = None if replicas is None else DataParallelHook(model, balancer, self.device)
        self._forward: nn.Module = (
            EncodeDecode(self.model) if self.ddp is None else self.ddp.forward
        )
        self.cosines = None
        if task_cosine_every > 0 and len(self.tasks) > 1:
            self.cosines = TaskCosineRecorder([t.name for t in self.tasks], task_cosine_every)
        self.meter = EpochMeter([t.name for t in self.tasks], progress)
        self.hooks: list[Hook] = [
            *self._built_in_hooks(on_nonfinite, probes, noise, seed, teachers, penalties),
            *hooks,
        ]
        names = [hook.name for hook in self.hooks]
        if len(set(names)) < len(names):
            raise ValueError(f"every hook needs a name of its own (checkpoint keys); got {names}.")

    def _built_in_hooks(
        self,
        on_nonfinite: str,
        probes: Sequence[StepProbe],
        noise: InputNoise | None,
        seed: int,
        teachers: Sequence[Teacher],
        penalties: ParameterPenalties | None,
    ) -> list[Hook]:
        """The hooks of the trainer's own options, in calling order: the forward context
        (autocast, then DDP's), the inputs (noise before the teachers read them), then what
        decides the update (the loss scale, the penalties, the guard)."""
        names = [task.name for task in self.tasks]
        model, balancer = self.model, self.balancer
        optional: list[Hook | None] = [
            None if self.ddp is None else self.ddp,
            InputNoiseHook(noise, names, seed, self.device) if noise and noise.active else None,
            TeachersHook([t.to(self.device) for t in teachers], model) if teachers else None,
            ProbesHook(probes, self.cosines, model, self.tasks, self.optimizer)
            if probes or self.cosines
            else None,
            PenaltiesHook(penalties) if penalties is not None and penalties.active else None,
        ]
        return [
            PrecisionHook(self.precision, self.device, model, balancer),
            *[hook for hook in optional if hook is not None],
            NonFiniteHook(self.guard, on_nonfinite, model, balancer, self._parameters),
            self.meter,
        ]

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
        if self.ddp is not None:
            self._forward = self.ddp.release()
            self.hooks.remove(self.ddp)
            self.ddp = None
        self.replicas = None
        self.balancer.replicas = None

    def _parameters(self) -> list[Tensor]:
        return [*self.model.parameters(), *self.balancer.parameters()]

    def _step(self, batch: Batch, number: int, epoch: int, hooks: Sequence[Hook]) -> StepState:
        """Step ``number`` of the run (from 1), in ``epoch``: the step, then the update if every
        hook allows it."""
        batch = batch.to(self.device, self.memory_format)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        step = StepState(number, epoch, batch, batch.inputs)
        training_step(
            self._forward, self.model, self.tasks, self.balancer, step, hooks, self.replicas
        )
        step.applied = all(hook.allow_update(step) for hook in hooks)
        if not step.applied:
            self.optimizer.zero_grad(set_to_none=True)
            return step
        self.optimizer.step()
        for hook in hooks:
            hook.after_update(step)
        return step

    def train_step(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """One optimisation step (outside :meth:`fit`, counted from 1 by the trainer); returns
        the detached (K,) losses and the applied weights."""
        self._loose_steps += 1
        step = self._step(batch, self._loose_steps, 0, self.hooks)
        assert step.reported is not None
        return step.reported, step.weights

    def train_epoch(self, batches: Iterable[Batch], epoch: int) -> tuple[Tensor, Tensor | None]:
        """One pass over ``batches``; returns the mean (K,) losses (over the steps where each task
        had a labelled row) and mean applied weights."""
        progress = FitProgress()
        progress.start_epoch(epoch)
        self._train_batches(batches, progress, self.hooks)
        self._end_epoch(progress, self.hooks)
        return self.meter.means(progress)

    def _train_batches(
        self, batches: Iterable[Batch], progress: FitProgress, hooks: Sequence[Hook]
    ) -> None:
        """Train on ``batches`` from ``progress``'s position, updating it step by step."""
        for batch in self.meter.batches(batches, progress.epoch):
            step = self._step(batch, progress.global_step + 1, progress.epoch, hooks)
            progress.step += 1
            progress.global_step += 1
            for hook in hooks:
                hook.after_step(step, progress)

    def _end_epoch(self, progress: FitProgress, hooks: Sequence[Hook]) -> None:
        """End the epoch's training pass for the hooks (sums, the guard's read, validation)
        and the balancer."""
        for hook in hooks:
            hook.end_epoch(progress)
        self.balancer.epoch_end()

    def evaluate(self, batches: Iterable[Batch]) -> Reports:
        """Every task's metrics over ``batches``."""
        return self.evaluate_with_losses(batches)[0]

    def evaluate_with_losses(self, batches: Iterable[Batch]) -> tuple[Reports, dict[str, float]]:
        """Every task's metrics and mean loss over ``batches`` (over the trainer's ``views``)."""
        return evaluate_with_losses(
            self.model,
            self.tasks,
            batches,
            self.device,
            self.memory_format,
            self.views,
            self.precision,
        )

    def selection_score(self, reports: Reports) -> float:
        """Mean over tasks of the primary metric, signed so that higher is better and on a
        common scale (:meth:`~mtlkit.tasks.Task.selection_value`: a lower-is-better metric is
        negated, a regression error is in units of the target's standard deviation). A task
        whose metric is undefined on these reports (NaN, e.g. AUROC when validation has one
        label) is left out; NaN when every task's is."""
        return nanmean([task.selection_value(reports[task.name]) for task in self.tasks])

    def state_dict(self, progress: FitProgress) -> dict[str, Any] | None:
        """The whole training state at ``progress``: model, optimizer, scheduler, balancer, the
        progress (position, sums, best-so-far selection, history) and every hook's state by
        name (a per-process hook's as one entry per rank), as tensors and plain values. Across
        processes every process calls it (the per-process states are gathered) and the main
        process gets the state, the others None. The global random number generators are per
        process (:mod:`mtlkit.training.state`)."""
        hooks = hook_states(self.hooks, self.replicas)
        if self.replicas is not None and self.replicas.rank != 0:
            return None
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "balancer": self.balancer.state_dict(),
            "progress": progress.state_dict(),
            "hooks": hooks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> FitProgress:
        """Load a :meth:`state_dict`; returns the progress to pass to :meth:`fit`.

        Raises:
            CheckpointError: a state without hook states (written before the hooks saved
                theirs), or one that lacks the state of one of this trainer's stateful hooks.
        """
        load_hook_states(self.hooks, state, 0 if self.replicas is None else self.replicas.rank)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.balancer.load_state_dict(state["balancer"])
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
        hooks = list(self.hooks)
        if make_val_batches is not None:
            validate = lambda: self.evaluate(make_val_batches())  # noqa: E731
            hooks.append(SelectionHook(validate, self.selection_score, self.model))
        elapsed = lambda: time.perf_counter() - self._epoch_start  # noqa: E731
        hooks.append(
            CheckpointHook(checkpoint, checkpoint_every, stop, self.replicas, self.guard, elapsed)
        )
        while progress.epoch <= epochs:
            record = self._epoch(make_train_batches, progress, hooks)
            progress.history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            progress.start_epoch(record.epoch + 1)
            self._epoch_start = time.perf_counter()
            for hook in hooks:
                hook.after_epoch(progress)
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

    def _epoch(
        self,
        make_train_batches: Callable[[int], Iterable[Batch]],
        progress: FitProgress,
        hooks: Sequence[Hook],
    ) -> EpochRecord:
        """Train the rest of ``progress.epoch``, end it, step the schedule; its record."""
        epoch = progress.epoch
        self._epoch_start = time.perf_counter() - progress.epoch_seconds
        batches = islice(make_train_batches(epoch), progress.step, None)
        steps_before, pass_start = progress.global_step, time.perf_counter()
        self._train_batches(batches, progress, hooks)
        steps = progress.global_step - steps_before
        step_seconds = (time.perf_counter() - pass_start) / steps if steps else None
        self._end_epoch(progress, hooks)
        lr, lrs = self.optimizer.param_groups[0]["lr"], learning_rates(self.optimizer)
        if self.scheduler is not None:
            self.scheduler.step()
        fields: dict[str, Any] = {"val": None, "score": None}
        for hook in hooks:
            fields.update(hook.epoch_fields(progress))
        return EpochRecord(
            epoch=epoch,
            lr=lr,
            lrs=lrs if len(lrs) > 1 else {},
            seconds=time.perf_counter() - self._epoch_start,
            step_seconds=step_seconds,
            **fields,
        )


def _check_fit(model: MultiTaskModel, tasks: Sequence[Task], balancer: Balancer) -> None:
    """Raise a clear ``ValueError`` when the model lacks a task's head, or the balancer needs a
    shared representation the model does not have."""
    missing = [t.name for t in tasks if t.name not in model.task_names]
    if missing:
        raise ValueError(f"the model has no head for task(s) {missing}; heads: {model.task_names}.")
    if getattr(balancer, "on_features", False) and not model.shared_representation:
        raise ValueError(
            f"{type(balancer).__name__} works on one shared representation that every task "
            f"reads, and {type(model).__name__} has none (each task reads features of its "
            "own); use a method on the shared parameters, or hard sharing."
        )
