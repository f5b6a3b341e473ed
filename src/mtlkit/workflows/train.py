"""Train one configuration: from a validated config to a finished run folder, across processes
when started by torchrun, resumable from its latest checkpoint."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mtlkit.config import ConfigError, ExperimentConfig, config_difference, upgrade_saved_config
from mtlkit.data import MultiTaskData, Split
from mtlkit.evaluation.document import write_reports
from mtlkit.evaluation.maps import MapSamples, sample_maps
from mtlkit.evaluation.plots import RunFigures
from mtlkit.evaluation.report import run_document
from mtlkit.measure.probes import StepProbe
from mtlkit.tasks import ClassificationTask, Task
from mtlkit.training import (
    CheckpointError,
    CosineSample,
    DivergedError,
    EpochRecord,
    FitProgress,
    FitResult,
    LaunchError,
    ProcessGroupReplicas,
    StopSignals,
    Trainer,
    TrainingInterrupted,
    capture_rng,
    evaluate_with_losses,
    fit_temperatures,
    process_group,
    restore_rng,
    save_checkpoint,
    seed_process,
)
from mtlkit.training.checkpoint import require_hook_states
from mtlkit.training.distributed import is_main_process, local_device
from mtlkit.training.hooks import Hook
from mtlkit.training.run_log import RunLog
from mtlkit.workflows.build import (
    build_balancer,
    build_model,
    build_tasks,
    build_views,
    eval_batches,
    load_data,
    resolve_device,
    train_batches,
)
from mtlkit.workflows.ensemble import (
    check_ensembles,
    ensemble_record,
    ensemble_rows,
    run_ensembles,
)
from mtlkit.workflows.evaluate import evaluate_run
from mtlkit.workflows.run_dir import RunDir, run_info
from mtlkit.workflows.trainer import build_trainer


@dataclass
class RunResult:
    """The outcome of one run: where it lives, its per-task test metrics and mean test losses,
    the selected epoch, the wall time, the training history (``fit``: records, skipped steps,
    gradient cosines) and each task's primary metric (what model selection and comparisons
    read)."""

    run_dir: Path
    test: dict[str, Any]
    best_epoch: int
    seconds: float
    test_loss: dict[str, float] = field(default_factory=dict)
    fit: FitResult = field(default_factory=FitResult)
    primary_metrics: dict[str, str] = field(default_factory=dict)
    maps: MapSamples | None = None
    """A few test images' per-pixel targets and predictions (``None`` without such tasks)."""

    @property
    def skipped(self) -> int:
        """The training steps skipped for non-finite values."""
        return self.fit.skipped

    def figures(self) -> RunFigures:
        """The plots of this run for a report (learning curves, cosines, confusion maps)."""
        return RunFigures(
            self.fit.history, self.fit.task_cosines, self.primary_metrics, maps=self.maps
        )


def finished_run(run_dir: str | Path) -> RunResult:
    """The result of a finished run: its history read back from ``metrics.json``, its test
    metrics recomputed from its selected weights (the same numbers; the report objects are not
    stored)."""
    folder = RunDir(Path(run_dir))
    metrics = json.loads(folder.metrics.read_text())
    config = folder.read_config()
    test = evaluate_run(folder.path, config.train.device, quiet=True)
    fit = FitResult(
        history=[EpochRecord(**record) for record in metrics["history"]],
        best_epoch=metrics["best_epoch"],
        skipped=metrics["skipped_steps"],
        best_score=metrics["best_val_score"],
        task_cosines=[CosineSample(**sample) for sample in metrics["task_cosine"]],
    )
    return RunResult(
        folder.path,
        test,
        metrics["best_epoch"],
        metrics["seconds"],
        {name: math.nan if loss is None else loss for name, loss in metrics["test_loss"].items()},
        fit,
        {name: entry["name"] for name, entry in metrics["primary_metric"].items()},
    )


def train(
    config: ExperimentConfig,
    run_dir: str | Path,
    probes: Sequence[StepProbe] = (),
    *,
    hooks: Sequence[Hook] = (),
    resume: bool = False,
) -> RunResult:
    """Train and evaluate one configuration, writing its run folder (main process only).

    Under torchrun every process calls this; they train together (see
    :mod:`mtlkit.training.trainer`). With ``resume`` the run continues from the folder's latest
    readable checkpoint (``last.pt``, else ``previous.pt``; from the start if it has none) to
    the parameters and metrics an uninterrupted run would have reached. ``probes`` measure the
    training as it goes (e.g. the task affinity of :mod:`mtlkit.evaluation.affinity`) without
    changing it; ``hooks`` join the training loop after its own (e.g. a sweep's pruner, which
    reads each epoch's validation score and may stop the run).

    Raises:
        OSError: the run folder cannot be written (checked before any work).
        ConfigError: the config does not fit the data (e.g. a fitted temperature without a
            validation split); a new run's ``config.yaml``, written first so that a run killed
            while its data loads can be resumed, is removed again.
        CheckpointError: ``resume`` and no checkpoint of the folder is readable.
        TrainingInterrupted: SIGINT or SIGTERM stopped the run after a checkpoint.
        DivergedError: a non-finite loss or gradient (``train.on_nonfinite: stop``).
    """
    # Each process seeds its global generators (dropout draws from them) from the run's seed;
    # the caller's generators are left as they were.
    caller = capture_rng()
    try:
        return _train(config, Path(run_dir), probes, hooks, resume)
    except ConfigError:
        if not resume and is_main_process():
            RunDir(Path(run_dir)).forget_unstarted()
        raise
    finally:
        restore_rng(caller)


def _train(
    config: ExperimentConfig,
    run_dir: Path,
    probes: Sequence[StepProbe],
    hooks: Sequence[Hook],
    resume: bool,
) -> RunResult:
    start = time.perf_counter()
    folder = RunDir(run_dir)
    if is_main_process():
        folder.check_writable()
        folder.write_config(config)  # first: a run killed while its data loads can be resumed
    device = local_device(resolve_device(config.train.device))
    with process_group(device) as replicas, contextlib.ExitStack() as before_leaving:
        rank = 0 if replicas is None else replicas.rank
        saved = _saved_state(folder, config, replicas) if resume else None
        seed_process(config.seed + rank)
        data = load_data(config)
        tasks = build_tasks(config, data.tasks, data.train)
        fit_temperature = _temperatures_to_fit(config, tasks)
        if fit_temperature and data.val is None:
            raise ConfigError(
                f"tasks.temperature: fitting task {fit_temperature[0]!r}'s temperature needs a "
                "validation split; set data.val_fraction > 0 or give the temperature as a number."
            )
        check_ensembles(config, tasks, data)
        model = build_model(config, data.input_shape, tasks)
        balancer = build_balancer(config, len(tasks))
        main = rank == 0
        trainer = build_trainer(
            config, model, tasks, balancer, device, replicas=replicas, probes=probes, hooks=hooks
        )
        before_leaving.callback(trainer.release_replicas)  # before the group is destroyed
        progress = None
        if saved is not None:
            progress = trainer.load_state_dict(saved)
            restore_rng(saved["rng"][rank])
        checkpoint = _Checkpoints(folder, trainer, config, replicas)
        log = None
        if main:
            folder.remove_temporaries()
            folder.write_preprocessing(data)
            log = RunLog(folder.path, history=[] if progress is None else progress.history)

        def on_epoch(record: EpochRecord) -> None:
            if log is not None:
                log.write(record)
                print(_epoch_line(config, tasks, record), flush=True)

        shards = {"rank": rank, "world_size": 1 if replicas is None else replicas.size}

        try:
            with StopSignals() as stop:
                fit = trainer.fit(
                    lambda epoch: train_batches(config, data.train, epoch, **shards),
                    config.train.epochs,
                    None if data.val is None else lambda: eval_batches(config, data.val, **shards),
                    on_epoch,
                    progress=progress,
                    checkpoint=checkpoint,
                    checkpoint_every=config.train.checkpoint_every,
                    stop=stop,
                )
        except TrainingInterrupted as stopped:
            raise TrainingInterrupted(
                f"{stopped}; the checkpoint {folder.last} holds it", stopped.signum
            ) from None
        except DivergedError as error:
            raise DivergedError(f"{error} {checkpoint.kept()}") from None
        finally:
            if log is not None:
                log.close()
        return complete_run(
            folder, config, trainer, fit, data, tasks, device, start, main=main, shards=shards
        )


def complete_run(
    folder: RunDir,
    config: ExperimentConfig,
    trainer: Trainer,
    fit: FitResult,
    data: MultiTaskData,
    tasks: list[Task],
    device: torch.device,
    start: float,
    *,
    main: bool = True,
    shards: dict[str, int] | None = None,
    info: dict[str, object] | None = None,
) -> RunResult:
    """Evaluate a trained ``trainer`` on the test split (every process its ``shards``: rank and
    world size) and write the rest of its run folder (``best.pt``, ``metrics.json``, the
    reports; main process only): what every workflow that trains into a run folder ends with.
    ``start`` is when the run began (``perf_counter``); ``info`` adds facts to the report's run
    table; the config's ``ensembles`` and the temperatures ``tasks.temperature: fit`` asks for
    are fitted here (on validation), and the test split is scored over ``eval.views``.
    """
    shards = shards or {"rank": 0, "world_size": 1}
    temperatures = {}
    if _temperatures_to_fit(config, tasks):  # every process on the whole validation split
        temperatures = fit_temperatures(
            trainer.model, tasks, eval_batches(config, data.val), device, trainer.memory_format
        )
    test, test_loss = evaluate_with_losses(
        trainer.model,
        tasks,
        eval_batches(config, data.test, **shards),
        device,
        trainer.memory_format,
        build_views(config),
    )
    ensembles = run_ensembles(config, trainer.model, tasks, data, device) if main else {}
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
                "skipped_steps": fit.skipped,
                "step_seconds": fit.step_seconds,
                "task_cosine": [asdict(sample) for sample in fit.task_cosines],
                "processes": shards["world_size"],
                "seconds": seconds,
                "data_fingerprint": data.fingerprint,
                "fitted_temperatures": temperatures,
                **({"ensembles": ensemble_record(ensembles)} if ensembles else {}),
            }
        )
        folder.previous.unlink(missing_ok=True)
    result = RunResult(folder.path, test, fit.best_epoch, seconds, test_loss, fit, primary)
    if main and isinstance(data.test, Split):
        result.maps = sample_maps(trainer.model, tasks, data.test.inputs, data.test.targets)
    if main:
        document = run_document(
            title=f"mtlkit run: {config.name}",
            run_info={**run_info(config, fit.best_epoch, seconds, device, data), **(info or {})},
            task_reports={**test, **ensemble_rows(ensembles)},
            history=[record.brief(primary) for record in fit.history],
            figures=result.figures(),
        )
        write_reports(folder.path, document)
    return result


def _temperatures_to_fit(config: ExperimentConfig, tasks: list[Task]) -> list[str]:
    """The classification tasks whose temperature is fitted on validation after training."""
    return [
        task.name
        for task in tasks
        if isinstance(task, ClassificationTask)
        and config.tasks.techniques(task.name)["temperature"] == "fit"
    ]


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined loss (a task with no labelled test row) is ``null``."""
    return value if math.isfinite(value) else None


class _Checkpoints:
    """The trainer's checkpoint callback: the whole state, every process's generators, the
    config and the number of processes, written by the main process as ``last.pt``."""

    def __init__(
        self,
        folder: RunDir,
        trainer: Trainer,
        config: ExperimentConfig,
        replicas: ProcessGroupReplicas | None,
    ) -> None:
        self.folder = folder
        self.trainer = trainer
        self.config = config
        self.replicas = replicas
        self.saved: str | None = None

    def __call__(self, progress: FitProgress) -> None:
        rng = [capture_rng()] if self.replicas is None else self.replicas.gather(capture_rng())
        state = self.trainer.state_dict(progress)  # every process: per-process hook states
        if rng is not None and state is not None:  # the main process
            state.update(rng=rng, processes=len(rng), config=self.config.to_dict())
            self.folder.save_state(state)
        self.saved = progress.label

    def kept(self) -> str:
        """Which checkpoint the run folder keeps, for a message."""
        if self.saved is None:
            return "No checkpoint was written before it."
        return f"The run folder keeps the last good checkpoint ({self.saved}): {self.folder.last}."


def _saved_state(
    folder: RunDir, config: ExperimentConfig, replicas: ProcessGroupReplicas | None
) -> dict[str, Any] | None:
    """The checkpoint to resume from, read by the main process and sent to every process;
    ``None`` when the run stopped before its first checkpoint."""
    outcome: Any = None
    if replicas is None or replicas.rank == 0:
        try:
            outcome = _read_checkpoint(folder, config, 1 if replicas is None else replicas.size)
        except (CheckpointError, ConfigError, LaunchError) as error:
            outcome = error
    if replicas is not None:
        outcome = replicas.broadcast(outcome)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _read_checkpoint(folder: RunDir, config: ExperimentConfig, size: int) -> dict[str, Any] | None:
    found = folder.load_state()
    if found is None:
        print(f"mtlkit: {folder.path} has no checkpoint yet; starting it again.", file=sys.stderr)
        return None
    state, path = found
    require_hook_states(state, str(path))
    if path != folder.last:
        print(
            f"mtlkit: {folder.last} is missing or unreadable; resuming from {path}.",
            file=sys.stderr,
        )
    difference = config_difference(upgrade_saved_config(state["config"]), config.to_dict())
    if difference is not None:
        raise ConfigError(f"{path} was written with another config ({difference}).")
    if state["processes"] != size:
        raise LaunchError(
            f"{folder.path} was trained by {state['processes']} process(es); resume it with "
            f"as many (now {size}), or the data order would change."
        )
    return state


def _epoch_line(config: ExperimentConfig, tasks: list[Task], record: EpochRecord) -> str:
    """One console line per epoch: losses, each task's validation primary metric, the steps
    skipped and those where a task had no labelled row, time."""
    losses = "  ".join(f"{t}={v:.4f}" for t, v in record.train_loss.items())
    val = ""
    if record.val is not None:
        val = "  val " + "  ".join(
            f"{task.name} {task.primary_metric}={record.val[task.name][task.primary_metric]:.4f}"
            for task in tasks
        )
    skipped = f"  skipped {record.skipped} step(s)" if record.skipped else ""
    penalties = "".join(f"  penalty {g}={v:.4g}" for g, v in record.penalties.items())
    empty = "".join(
        f"  [{t}: no labelled row in {n} step(s), zero loss there]"
        for t, n in record.unlabelled_steps.items()
        if n
    )
    return (
        f"[{config.name}] epoch {record.epoch}/{config.train.epochs}  loss {losses}{penalties}{val}"
        f"{skipped}  ({record.seconds:.1f}s){empty}"
    )
