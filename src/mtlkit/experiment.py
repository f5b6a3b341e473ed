"""From a validated configuration to a finished run directory — the code under the CLI.

A run directory holds ``config.yaml`` (the resolved configuration), ``log.csv`` and ``tb/`` (the
epoch history), ``best.pt`` (the selected weights), ``last.pt`` (the whole training state after the
last epoch), ``metrics.json`` (final per-task test metrics and the history) and ``report.md``.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

import mtlkit
from mtlkit.atomic import write_text_atomic
from mtlkit.balancing import Balancer, create, describe
from mtlkit.config import ConfigError, ExperimentConfig, parse_config
from mtlkit.data import MultiTaskData, Split, TensorBatches, load_benchmark
from mtlkit.evaluation import (
    ClassificationReport,
    ComparisonRow,
    compare_reports,
    delta_m_from_rows,
    format_comparison_table,
    write_report,
)
from mtlkit.models import HardSharing, MultiTaskModel, classification_head, create_backbone
from mtlkit.tasks import ClassificationTask, Task
from mtlkit.training import (
    Trainer,
    create_optimizer,
    create_scheduler,
    evaluate,
    load_checkpoint,
    save_checkpoint,
)
from mtlkit.training.distributed import is_main_process
from mtlkit.training.run_log import RunLog


@dataclass
class RunResult:
    """The outcome of one run: where it lives and its per-task test metrics."""

    run_dir: Path
    test: dict[str, ClassificationReport]
    best_epoch: int
    seconds: float


_RUN_FILES = ("config.yaml", "log.csv", "best.pt", "last.pt", "metrics.json", "report.md")
_COMPARISON_FILES = ("comparison.json", "report.md")


def prepare_run_dir(path: str | Path, *, overwrite: bool) -> Path:
    """Make ``path`` ready for a new run or comparison, never losing a finished one by accident.

    A folder holding a finished run (``metrics.json``) or comparison (``comparison.json``) is
    refused unless ``overwrite``; with ``overwrite``, the files mtlkit wrote there before (and
    only those, in sub-runs too) are removed first, so nothing stale mixes with the new run.

    Raises:
        FileExistsError: the folder holds a finished run and ``overwrite`` is false.
    """
    path = Path(path)
    finished = [name for name in ("metrics.json", "comparison.json") if (path / name).exists()]
    if finished and not overwrite:
        raise FileExistsError(
            f"{path} already holds a finished run ({finished[0]}); pass --overwrite to replace "
            "it, or choose another --out."
        )
    if overwrite and path.is_dir():
        _remove_run_files(path)
    return path


def _remove_run_files(path: Path) -> None:
    for name in (*_RUN_FILES, *_COMPARISON_FILES):
        (path / name).unlink(missing_ok=True)
    shutil.rmtree(path / "tb", ignore_errors=True)
    for sub in [path / "multi-task", *path.glob("single-*")]:
        if (sub / "config.yaml").is_file():
            _remove_run_files(sub)


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} was asked for but no CUDA GPU is visible.")
    return device


def load_data(config: ExperimentConfig) -> MultiTaskData:
    """The benchmark the config names, restricted to ``tasks.include`` when given."""
    data = load_benchmark(
        config.data.benchmark,
        protocol=config.data.protocol,
        seed=config.seed,
        val_fraction=config.data.val_fraction,
        limit=config.data.limit,
        data_dir=config.data.data_dir,
    )
    include = config.tasks.include
    if include is None:
        return data
    known = [spec.name for spec in data.tasks]
    unknown = [name for name in include if name not in known]
    if unknown or not include:
        raise ConfigError(f"tasks.include: {unknown or include} is not a subset of {known}.")
    return MultiTaskData(
        name=data.name,
        protocol=data.protocol,
        tasks=[spec for spec in data.tasks if spec.name in include],
        train=data.train.subset(include),
        val=None if data.val is None else data.val.subset(include),
        test=data.test.subset(include),
        fingerprint=data.fingerprint,
    )


def build_tasks(config: ExperimentConfig, data: MultiTaskData) -> list[Task]:
    """One classification task per task of the data."""
    return [
        ClassificationTask(spec.name, spec.num_classes, config.tasks.label_smoothing)
        for spec in data.tasks
    ]


def build_model(config: ExperimentConfig, data: MultiTaskData, tasks: list[Task]) -> MultiTaskModel:
    """The shared network, initialised from the config's seed without touching global RNG state."""
    _, channels, height, width = data.train.inputs.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        trunk = create_backbone(config.model.backbone, channels, (height, width))
        heads = {
            task.name: classification_head(
                trunk.out_features, task.output_size, config.model.head_hidden
            )
            for task in tasks
        }
        return HardSharing(trunk, heads)


def build_balancer(config: ExperimentConfig, num_tasks: int) -> Balancer:
    """The balancing method; a method with its own ``seed`` option gets the run's seed unless
    the config sets one, so that runs with different seeds draw differently."""
    options = config.balancer.options
    if "seed" in describe(config.balancer.name).options:
        options.setdefault("seed", config.seed)
    try:
        return create(config.balancer.name, num_tasks=num_tasks, **options)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"balancer: {error}") from None


def batches(
    split: Split, batch_size: int, *, shuffle: bool, seed: int, epoch: int = 0
) -> TensorBatches:
    """The batches of a split for one epoch; the order is a function of (seed, epoch) alone."""
    loader = TensorBatches(split, batch_size, shuffle=shuffle, seed=seed, drop_last=False)
    loader.set_epoch(epoch)
    return loader


def train(config: ExperimentConfig, run_dir: str | Path) -> RunResult:
    """Train and evaluate one configuration, writing its run directory."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    device = resolve_device(config.train.device)
    data = load_data(config)
    tasks = build_tasks(config, data)
    model = build_model(config, data, tasks)
    balancer = build_balancer(config, len(tasks))
    optimizer = create_optimizer(config.optim, [*model.parameters(), *balancer.parameters()])
    scheduler = create_scheduler(config.schedule, optimizer, config.train.epochs)
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
    )
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False)
        )
    log = RunLog(run_dir) if main else None

    def on_epoch(record) -> None:
        if not main:
            return
        log.write(record)
        save_checkpoint(run_dir / "last.pt", _training_state(trainer, record.epoch, config))
        val = (
            ""
            if record.val is None
            else "  val " + "  ".join(f"{t}={m['accuracy']:.4f}" for t, m in record.val.items())
        )
        losses = "  ".join(f"{t}={v:.4f}" for t, v in record.train_loss.items())
        print(
            f"[{config.name}] epoch {record.epoch}/{config.train.epochs}  loss {losses}{val}  "
            f"({record.seconds:.1f}s)",
            flush=True,
        )

    val_batches = (
        None
        if data.val is None
        else lambda: batches(
            data.val, config.train.eval_batch_size, shuffle=False, seed=config.seed
        )
    )
    try:
        fit = trainer.fit(
            lambda epoch: batches(
                data.train, config.train.batch_size, shuffle=True, seed=config.seed, epoch=epoch
            ),
            config.train.epochs,
            val_batches,
            on_epoch,
        )
    finally:
        if log is not None:
            log.close()
    test = trainer.evaluate(batches(data.test, config.train.eval_batch_size, shuffle=False, seed=0))
    seconds = time.perf_counter() - start
    if main:
        save_checkpoint(
            run_dir / "best.pt",
            {
                "model": trainer.model.state_dict(),
                "epoch": fit.best_epoch,
                "config": config.to_dict(),
            },
        )
        history = [asdict(record) for record in fit.history]
        metrics = {
            "test": {name: report.to_dict() for name, report in test.items()},
            "best_epoch": fit.best_epoch,
            "history": history,
            "seconds": seconds,
            "data_fingerprint": data.fingerprint,
        }
        write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        write_report(
            run_dir / "report.md",
            title=f"mtlkit run: {config.name}",
            run_info=_run_info(config, fit.best_epoch, seconds, device, data),
            task_reports=test,
            history=[record.brief() for record in fit.history],
        )
    return RunResult(run_dir=run_dir, test=test, best_epoch=fit.best_epoch, seconds=seconds)


@dataclass
class BaselineComparison:
    """A multi-task run against one single-task run per task."""

    rows: list[ComparisonRow]
    table: str
    report_path: Path
    seconds: float


def train_with_baselines(config: ExperimentConfig, out_dir: str | Path) -> BaselineComparison:
    """Train ``config`` as is (``<out>/multi-task``) and, per task, the same network on that task
    alone (``<out>/single-<task>``); compare their test accuracy and write ``<out>/report.md``."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    multi = train(config, out_dir / "multi-task")
    single: dict[str, ClassificationReport] = {}
    for task in multi.test:
        raw = config.to_dict()
        raw["name"] = f"{config.name}-single-{task}"
        raw["tasks"]["include"] = [task]
        raw["balancer"] = {"name": "ew"}
        single[task] = train(parse_config(raw), out_dir / f"single-{task}").test[task]
    rows = compare_reports(multi.test, single)
    seconds = time.perf_counter() - start
    report_path = out_dir / "report.md"
    if is_main_process():
        write_report(
            report_path,
            title=f"mtlkit: {config.name}, multi-task vs single-task",
            run_info={
                "config": config.name,
                "method": config.balancer.name,
                "backbone": config.model.backbone,
                "epochs": config.train.epochs,
                "seed": config.seed,
                "multi-task run": str(multi.run_dir),
                "single-task runs": ", ".join(str(out_dir / f"single-{t}") for t in single),
                "wall time (s)": round(seconds, 1),
            },
            task_reports=multi.test,
            comparison=rows,
        )
        summary = {"rows": [asdict(row) for row in rows], "delta_m": delta_m_from_rows(rows)}
        write_text_atomic(out_dir / "comparison.json", json.dumps(summary, indent=2))
    return BaselineComparison(rows, format_comparison_table(rows), report_path, seconds)


def evaluate_run(run_dir: str | Path, device: str = "auto") -> dict[str, ClassificationReport]:
    """Re-evaluate a finished run's selected weights (``best.pt``) on its test split."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory: it has no config.yaml.")
    config = parse_config(yaml.safe_load(config_path.read_text()))
    state = load_checkpoint(run_dir / "best.pt")
    data = load_data(config)
    tasks = build_tasks(config, data)
    model = build_model(config, data, tasks)
    model.load_state_dict(state["model"])
    target = resolve_device(device)
    memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
    model.to(target, memory_format=memory_format)
    test_batches = batches(data.test, config.train.eval_batch_size, shuffle=False, seed=0)
    return evaluate(model, tasks, test_batches, target, memory_format)


def _training_state(trainer: Trainer, epoch: int, config: ExperimentConfig) -> dict[str, Any]:
    return {
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": None if trainer.scheduler is None else trainer.scheduler.state_dict(),
        "balancer": trainer.balancer.state_dict(),
        "epoch": epoch,
        "config": config.to_dict(),
    }


def _run_info(
    config: ExperimentConfig,
    best_epoch: int,
    seconds: float,
    device: torch.device,
    data: MultiTaskData,
) -> dict[str, object]:
    return {
        "config": config.name,
        "benchmark": f"{data.name} ({data.protocol} protocol)",
        "method": config.balancer.name,
        "backbone": config.model.backbone,
        "seed": config.seed,
        "epochs": config.train.epochs,
        "best epoch (validation)": best_epoch,
        "wall time (s)": round(seconds, 1),
        "device": str(device),
        "mtlkit": mtlkit.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data fingerprint": data.fingerprint[:16],
    }
