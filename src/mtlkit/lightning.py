"""mtlkit in Lightning: :class:`MultiTaskModule` trains any
:class:`~mtlkit.models.MultiTaskModel` with any mtlkit balancing method under a Lightning
``Trainer`` (``pip install 'mtlkit[lightning]'``).

Lightning runs the loop (epochs, devices, processes, loggers, callbacks); each training step is
mtlkit's own (:meth:`mtlkit.training.Trainer.train_step`: forward, task losses with label masks
and row weights, ``balancer.backward``, ``optimizer.step``), so a method that reads per-task
gradients sees them exactly as in ``mtlkit train``. The module therefore uses Lightning's manual
optimization: Lightning never back-propagates or steps on its own.

* Precision: ``precision="bf16-mixed"`` runs the forward pass under bf16 autocast and the
  balancer's backward and solvers in float32, as mtlkit's ``train.precision: bf16`` does;
  ``"16-mixed"`` is mtlkit's fp16 (CUDA, loss weightings only, mtlkit's own loss scale);
  ``"32-true"`` is float32.
* Processes: under ``strategy="ddp"`` (gloo on CPU, NCCL on CUDA) the per-task gradients are
  averaged over the processes before the balancer aggregates them, so N processes at batch B take
  the same steps as one process at batch N·B (each process must get its own shard of the data:
  mtlkit's loaders take ``rank`` and ``world_size``; Lightning shards a ``DataLoader`` itself).
* Logs: every training step, each task's loss (``train/loss/<task>``, the mean over the
  processes) and, for methods that weight the losses, each task's weight
  (``train/weight/<task>``); every validation epoch, each task's metrics
  (``val/<task>/<metric>``), through the Trainer's logger.

A batch is an :class:`mtlkit.data.Batch` (what mtlkit's loaders yield), or a tuple ``(inputs,
targets)`` or ``(inputs, targets, masks)`` with ``targets`` and ``masks`` dicts keyed by task.
This module is the only one of mtlkit that imports Lightning; nothing of mtlkit imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

try:
    import lightning.pytorch as pl
except ImportError as error:  # the optional extra is missing
    raise ImportError(
        "mtlkit.lightning needs Lightning, which is not installed: pip install "
        f"'mtlkit[lightning]' ({error})."
    ) from None

from mtlkit.balancing import Balancer
from mtlkit.data import Batch
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task, TaskMetrics
from mtlkit.training import ProcessGroupReplicas, Trainer, create_optimizer

__all__ = ["PRECISIONS", "MultiTaskModule"]

PRECISIONS = {"32-true": "fp32", "32": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}
"""Lightning's precision setting → mtlkit's ``train.precision`` that the steps run in."""
_SET_BY_LIGHTNING = ("device", "precision", "replicas", "progress")
"""The :class:`~mtlkit.training.Trainer` keywords that come from Lightning's Trainer."""

OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
"""Makes the optimizer from every trainable parameter (the model's, then the balancer's)."""


class MultiTaskModule(pl.LightningModule):
    """A ``LightningModule`` that trains ``model`` on ``tasks`` with ``balancer``.

    Args:
        model: the multi-task network (``forward`` of this module is the model's).
        tasks: its tasks, in the order the balancer sees their losses.
        balancer: any mtlkit balancing method (``mtlkit.balancing.create("upgrad")``, ...).
        optimizer: ``"sgd"`` (with momentum 0.9) or ``"adam"`` at ``lr``, or a function that
            makes the optimizer from the parameters (the model's, then the balancer's own).
        lr: the learning rate of a named optimizer.
        scheduler: makes a learning-rate schedule from the optimizer, stepped at every epoch's
            end (as in ``mtlkit train``); ``None``: a constant rate.
        step_options: further keywords of mtlkit's :class:`~mtlkit.training.Trainer` (e.g.
            ``on_nonfinite="skip"``, ``noise``, ``penalties``, ``check_finite_every``); the
            device, the precision and the processes come from Lightning's ``Trainer``.

    Raises:
        ValueError: a step option that Lightning sets, or a task without a head in ``model``.
    """

    def __init__(
        self,
        model: MultiTaskModel,
        tasks: Sequence[Task],
        balancer: Balancer,
        optimizer: str | OptimizerFactory = "sgd",
        lr: float = 0.01,
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        **step_options: Any,
    ) -> None:
        super().__init__()
        clash = [key for key in step_options if key in _SET_BY_LIGHTNING]
        if clash:
            raise ValueError(
                f"{', '.join(clash)} of the step come from Lightning's Trainer (accelerator, "
                "devices, precision, strategy); leave them out of MultiTaskModule's options."
            )
        missing = [task.name for task in tasks if task.name not in model.task_names]
        if missing:
            raise ValueError(
                f"the model has no head for task(s) {missing}; heads: {model.task_names}."
            )
        self.automatic_optimization = False
        self.model = model
        self.balancer = balancer
        self.tasks = list(tasks)
        self._optimizer = optimizer
        self._lr = lr
        self._scheduler = scheduler
        self._step_options = step_options
        self._steps: Trainer | None = None
        self._metrics: dict[str, TaskMetrics] = {}

    def forward(self, inputs: Tensor | dict[str, Tensor]) -> dict[str, Tensor]:
        """Each task's output for ``inputs``."""
        return self.model(inputs)

    def configure_optimizers(self) -> Any:
        params = list(self.model.parameters())
        if callable(self._optimizer):
            optimizer = self._optimizer([*params, *self.balancer.parameters()])
        else:
            optimizer = create_optimizer(
                self._optimizer, params, self.balancer.parameters(), lr=self._lr
            )
        if self._scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self._scheduler(optimizer)}

    def on_fit_start(self) -> None:
        """Build mtlkit's step on the device, precision and processes Lightning chose."""
        precision = str(self.trainer.precision)
        if precision not in PRECISIONS:
            raise ValueError(
                f"precision {precision!r} is not one MultiTaskModule can train in; choose one "
                f"of {', '.join(PRECISIONS)} (the weights stay float32)."
            )
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        replicas = None
        if distributed and torch.distributed.get_world_size() > 1:
            replicas = ProcessGroupReplicas(self.device)
        self._steps = Trainer(
            self.model,
            self.tasks,
            self.balancer,
            self.trainer.optimizers[0],
            device=self.device,
            precision=PRECISIONS[precision],
            progress=False,
            replicas=replicas,
            **self._step_options,
        )

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One mtlkit step on ``batch``; logs each task's loss (and weight)."""
        assert self._steps is not None, "on_fit_start builds the step"
        # Lightning's autocast stays out: mtlkit's step autocasts the forward pass alone
        batch = _as_batch(batch)
        with torch.autocast(self.device.type, enabled=False):
            losses, weights = self._steps.train_step(batch)
        size = len(batch)
        for k, task in enumerate(self.tasks):
            self.log(f"train/loss/{task.name}", losses[k], batch_size=size)
            if weights is not None:
                self.log(f"train/weight/{task.name}", weights[k], batch_size=size)

    def on_train_epoch_end(self) -> None:
        """Read the epoch's non-finite flags, end the epoch for the balancer (DWA works per
        epoch) and step the schedule."""
        assert self._steps is not None
        self._steps.guard.check()
        self.balancer.epoch_end()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def on_fit_end(self) -> None:
        """Let go of the processes' gradient averaging before Lightning ends the group."""
        if self._steps is not None:
            self._steps.release_replicas()

    def on_validation_epoch_start(self) -> None:
        self._metrics = {task.name: task.metrics().to(self.device) for task in self.tasks}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Update every task's metrics with ``batch`` (rows without a task's label left out)."""
        batch = _as_batch(batch)
        outputs = self.model(batch.inputs)
        for task in self.tasks:
            if task.name in batch.targets:
                output = outputs[task.name]
                if output.is_floating_point():
                    output = output.float()
                mask = batch.masks.get(task.name)
                self._metrics[task.name].update(output, batch.targets[task.name], mask)

    def on_validation_epoch_end(self) -> None:
        """Log every task's scalar metrics (over every process's rows)."""
        for name, metrics in self._metrics.items():
            for metric, value in metrics.compute().summary().items():
                self.log(f"val/{name}/{metric}", float(value))


def _as_batch(batch: Batch | Iterable[Any]) -> Batch:
    """An mtlkit :class:`~mtlkit.data.Batch` of ``batch``."""
    if isinstance(batch, Batch):
        return batch
    parts = tuple(batch)
    if len(parts) not in (2, 3) or not isinstance(parts[1], dict):
        raise TypeError(
            "a batch is an mtlkit Batch, or (inputs, targets) or (inputs, targets, masks) with "
            f"targets and masks dicts keyed by task; got {type(batch).__name__} of "
            f"{len(parts)} item(s)."
        )
    return Batch(parts[0], dict(parts[1]), dict(parts[2]) if len(parts) == 3 else {})
