"""Train one configuration: from a validated config to a finished run folder."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtlkit.config import ConfigError, ExperimentConfig
from mtlkit.evaluation.document import write_reports
from mtlkit.evaluation.plots import RunFigures
from mtlkit.evaluation.report import run_document
from mtlkit.tasks import Task
from mtlkit.training import EpochRecord, FitResult, Trainer, save_checkpoint
from mtlkit.training.distributed import is_main_process, world_size
from mtlkit.training.probes import StepProbe
from mtlkit.training.run_log import RunLog
from mtlkit.workflows.build import (
    build_balancer,
    build_model,
    build_optimization,
    build_tasks,
    eval_batches,
    load_data,
    resolve_device,
    train_batches,
)
from mtlkit.workflows.run_dir import RunDir, run_info, training_state


@dataclass
class RunResult:
    """The outcome of one run: where it lives, its per-task test metrics and mean test losses,
    and each task's primary metric (what model selection and comparisons read)."""

    run_dir: Path
    test: dict[str, Any]
    best_epoch: int
    seconds: float
    test_loss: dict[str, float] = field(default_factory=dict)
    fit: FitResult = field(default_factory=FitResult)
    primary_metrics: dict[str, str] = field(default_factory=dict)

    def figures(self) -> RunFigures:
        """The plots of this run for a report (learning curves, cosines, confusion maps)."""
        return RunFigures(self.fit.history, self.fit.task_cosines, self.primary_metrics)


def refuse_multiple_processes() -> None:
    """Stop before any work when started as several processes (``torchrun``): every rank would
    train on the whole data and the metrics would be summed over ranks."""
    processes = world_size()
    if processes > 1:
        raise ConfigError(
            f"started as {processes} processes (torchrun), but mtlkit does not train across "
            "processes yet: every process would train on all the data. Run one process "
            "(`mtlkit train ...` or `torchrun --nproc-per-node 1 ...`)."
        )


def train(
    config: ExperimentConfig, run_dir: str | Path, probes: Sequence[StepProbe] = ()
) -> RunResult:
    """Train and evaluate one configuration, writing its run folder (main process only).

    ``probes`` measure the training as it goes (e.g. the task affinity of
    :mod:`mtlkit.evaluation.affinity`) without changing it.
    """
    refuse_multiple_processes()
    start = time.perf_counter()
    folder = RunDir(Path(run_dir))
    device = resolve_device(config.train.device)
    data = load_data(config)
    tasks = build_tasks(config, data.tasks)
    model = build_model(config, data.input_shape, tasks)
    balancer = build_balancer(config, len(tasks))
    optimizer, scheduler = build_optimization(config, model, balancer)
    main = is_main_process()
    trainer = Trainer(
        model,
        tasks,
        balancer,
        optimizer,
        scheduler,
        device=device,
        channels_last=config.train.channels_last,
        progress=config.train.progress and main,
        task_cosine_every=config.train.log_task_cosine_every,
        probes=probes,
    )
    log = None
    if main:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_config(config)
        folder.write_preprocessing(data)
        log = RunLog(folder.path)

    def on_epoch(record: EpochRecord) -> None:
        if log is None:
            return
        log.write(record)
        save_checkpoint(folder.last, training_state(trainer, record.epoch, config))
        print(_epoch_line(config, tasks, record), flush=True)

    # Random layers (dropout) draw from the global generators: seed them from the run's seed, in a
    # fork, so that a run is reproducible and the caller's random state is left as it was.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        try:
            fit = trainer.fit(
                lambda epoch: train_batches(config, data.train, epoch),
                config.train.epochs,
                None if data.val is None else lambda: eval_batches(config, data.val),
                on_epoch,
            )
        finally:
            if log is not None:
                log.close()
    test, test_loss = trainer.evaluate_with_losses(eval_batches(config, data.test))
    primary = {task.name: task.primary_metric for task in tasks}
    seconds = time.perf_counter() - start
    if main:
        best = {"model": trainer.model.state_dict(), "epoch": fit.best_epoch}
        save_checkpoint(folder.best, {**best, "config": config.to_dict()})
        folder.write_metrics(
            {
                "test": {name: report.to_dict() for name, report in test.items()},
                "test_loss": {name: _finite_or_none(loss) for name, loss in test_loss.items()},
                "primary_metric": {
                    task.name: {
                        "name": task.primary_metric,
                        "higher_is_better": task.higher_is_better,
                    }
                    for task in tasks
                },
                "best_epoch": fit.best_epoch,
                "best_val_score": fit.best_score,
                "history": [asdict(record) for record in fit.history],
                "step_seconds": fit.step_seconds,
                "task_cosine": [asdict(sample) for sample in fit.task_cosines],
                "seconds": seconds,
                "data_fingerprint": data.fingerprint,
            }
        )
    result = RunResult(
        run_dir=folder.path,
        test=test,
        best_epoch=fit.best_epoch,
        seconds=seconds,
        test_loss=test_loss,
        fit=fit,
        primary_metrics=primary,
    )
    if main:
        document = run_document(
            title=f"mtlkit run: {config.name}",
            run_info=run_info(config, fit.best_epoch, seconds, device, data),
            task_reports=test,
            history=[record.brief(primary) for record in fit.history],
            figures=result.figures(),
        )
        write_reports(folder.path, document)
    return result


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined loss (a task with no labelled test row) is ``null``."""
    return value if math.isfinite(value) else None


def _epoch_line(config: ExperimentConfig, tasks: list[Task], record: EpochRecord) -> str:
    """One console line per epoch: losses, each task's validation primary metric, the steps
    where a task had no labelled row, time."""
    losses = "  ".join(f"{t}={v:.4f}" for t, v in record.train_loss.items())
    val = ""
    if record.val is not None:
        val = "  val " + "  ".join(
            f"{task.name} {task.primary_metric}={record.val[task.name][task.primary_metric]:.4f}"
            for task in tasks
        )
    empty = "".join(
        f"  [{t}: no labelled row in {n} step(s), zero loss there]"
        for t, n in record.unlabelled_steps.items()
        if n
    )
    return (
        f"[{config.name}] epoch {record.epoch}/{config.train.epochs}  loss {losses}{val}  "
        f"({record.seconds:.1f}s){empty}"
    )
