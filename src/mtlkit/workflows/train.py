"""Train one configuration: from a validated config to a finished run folder, across processes
when started by torchrun, resumable from its latest checkpoint."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mtlkit.config import ConfigError, ExperimentConfig, config_difference
from mtlkit.evaluation import write_report
from mtlkit.tasks import ClassificationReport
from mtlkit.training import (
    CheckpointError,
    DivergedError,
    EpochRecord,
    FitProgress,
    LaunchError,
    ProcessGroupReplicas,
    StopSignals,
    Trainer,
    TrainingInterrupted,
    capture_rng,
    process_group,
    restore_rng,
    save_checkpoint,
    seed_process,
)
from mtlkit.training.distributed import is_main_process, local_device
from mtlkit.training.run_log import RunLog
from mtlkit.workflows.build import (
    batches,
    build_balancer,
    build_model,
    build_optimization,
    build_tasks,
    load_data,
    resolve_device,
)
from mtlkit.workflows.run_dir import RunDir, run_info


@dataclass
class RunResult:
    """The outcome of one run: where it lives, its per-task test metrics, the selected epoch,
    the wall time, and the steps skipped for non-finite values."""

    run_dir: Path
    test: dict[str, Any]
    best_epoch: int
    seconds: float
    skipped: int = 0


def finished_run(run_dir: str | Path) -> RunResult:
    """The result of a finished run, read back from its ``metrics.json``."""
    folder = RunDir(Path(run_dir))
    metrics = json.loads(folder.metrics.read_text())
    test = {
        name: ClassificationReport.from_confusion_matrix(torch.tensor(report["confusion_matrix"]))
        for name, report in metrics["test"].items()
    }
    return RunResult(
        folder.path, test, metrics["best_epoch"], metrics["seconds"], metrics["skipped_steps"]
    )


def train(config: ExperimentConfig, run_dir: str | Path, *, resume: bool = False) -> RunResult:
    """Train and evaluate one configuration, writing its run folder (main process only).

    Under torchrun every process calls this; they train together (see
    :mod:`mtlkit.training.trainer`). With ``resume`` the run continues from the folder's latest
    readable checkpoint (``last.pt``, else ``previous.pt``; from the start if it has none) to
    the parameters and metrics an uninterrupted run would have reached.

    Raises:
        OSError: the run folder cannot be written (checked before any work).
        CheckpointError: ``resume`` and no checkpoint of the folder is readable.
        TrainingInterrupted: SIGINT or SIGTERM stopped the run after a checkpoint.
        DivergedError: a non-finite loss or gradient (``train.on_nonfinite: stop``).
    """
    start = time.perf_counter()
    folder = RunDir(Path(run_dir))
    if is_main_process():
        folder.check_writable()
    device = local_device(resolve_device(config.train.device))
    with process_group(device) as replicas:
        rank = 0 if replicas is None else replicas.rank
        saved = _saved_state(folder, config, replicas) if resume else None
        seed_process(config.seed + rank)
        data = load_data(config)
        tasks = build_tasks(config, data)
        model = build_model(config, data, tasks)
        balancer = build_balancer(config, len(tasks))
        optimizer, scheduler = build_optimization(config, model, balancer)
        main = rank == 0
        trainer = Trainer(
            model,
            tasks,
            balancer,
            optimizer,
            scheduler,
            device=device,
            channels_last=config.train.channels_last,
            progress=config.train.progress and main,
            replicas=replicas,
            check_finite_every=config.train.check_finite_every,
            on_nonfinite=config.train.on_nonfinite,
        )
        progress = None
        if saved is not None:
            progress = trainer.load_state_dict(saved)
            restore_rng(saved["rng"][rank])
        checkpoint = _Checkpoints(folder, trainer, config, replicas)
        log = None
        if main:
            folder.remove_temporaries()
            folder.write_config(config)
            log = RunLog(folder.path, history=[] if progress is None else progress.history)

        def on_epoch(record: EpochRecord) -> None:
            if log is not None:
                log.write(record)
                print(_epoch_line(config, record), flush=True)

        size = 1 if replicas is None else replicas.size

        def train_batches(epoch: int):
            return batches(
                data.train,
                config.train.batch_size,
                shuffle=True,
                seed=config.seed,
                epoch=epoch,
                rank=rank,
                world_size=size,
            )

        def eval_batches(split):
            return batches(
                split,
                config.train.eval_batch_size,
                shuffle=False,
                seed=config.seed,
                rank=rank,
                world_size=size,
            )

        try:
            with StopSignals() as stop:
                fit = trainer.fit(
                    train_batches,
                    config.train.epochs,
                    None if data.val is None else lambda: eval_batches(data.val),
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
        test = trainer.evaluate(eval_batches(data.test))
        seconds = time.perf_counter() - start
        if main:
            best = {"model": trainer.model.state_dict(), "epoch": fit.best_epoch}
            save_checkpoint(folder.best, {**best, "config": config.to_dict()})
            folder.write_metrics(
                {
                    "test": {name: report.to_dict() for name, report in test.items()},
                    "best_epoch": fit.best_epoch,
                    "history": [asdict(record) for record in fit.history],
                    "skipped_steps": fit.skipped,
                    "processes": size,
                    "seconds": seconds,
                    "data_fingerprint": data.fingerprint,
                }
            )
            folder.previous.unlink(missing_ok=True)
            write_report(
                folder.report,
                title=f"mtlkit run: {config.name}",
                run_info=run_info(config, fit.best_epoch, seconds, device, data),
                task_reports=test,
                history=[record.brief() for record in fit.history],
            )
    return RunResult(folder.path, test, fit.best_epoch, seconds, fit.skipped)


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
        if rng is not None:  # the main process
            state = self.trainer.state_dict(progress)
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
    if path != folder.last:
        print(
            f"mtlkit: {folder.last} is missing or unreadable; resuming from {path}.",
            file=sys.stderr,
        )
    difference = config_difference(state["config"], config.to_dict())
    if difference is not None:
        raise ConfigError(f"{path} was written with another config ({difference}).")
    if state["processes"] != size:
        raise LaunchError(
            f"{folder.path} was trained by {state['processes']} process(es); resume it with "
            f"as many (now {size}), or the data order would change."
        )
    return state


def _epoch_line(config: ExperimentConfig, record: EpochRecord) -> str:
    """One console line per epoch: losses, validation accuracy, time."""
    losses = "  ".join(f"{t}={v:.4f}" for t, v in record.train_loss.items())
    val = ""
    if record.val is not None:
        val = "  val " + "  ".join(f"{t}={m['accuracy']:.4f}" for t, m in record.val.items())
    skipped = f"  skipped {record.skipped} step(s)" if record.skipped else ""
    return (
        f"[{config.name}] epoch {record.epoch}/{config.train.epochs}  loss {losses}{val}"
        f"{skipped}  ({record.seconds:.1f}s)"
    )
