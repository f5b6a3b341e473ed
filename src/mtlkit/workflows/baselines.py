"""Multi-task against single-task: the config as is, and the same network on each task alone."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtlkit.atomic import write_text_atomic
from mtlkit.config import ConfigError, ExperimentConfig, parse_config
from mtlkit.evaluation import ComparisonRow, compare_reports, delta_m, format_comparison_table
from mtlkit.evaluation.document import write_reports
from mtlkit.evaluation.report import run_document
from mtlkit.tasks import delta_m_metrics
from mtlkit.training.distributed import is_main_process, world_size
from mtlkit.workflows.build import load_data, resolve_device
from mtlkit.workflows.cells import refuse_several_processes
from mtlkit.workflows.parallel_runs import Job, run_jobs
from mtlkit.workflows.run_dir import RunDir
from mtlkit.workflows.sweeps import intra_op_threads, threads_per_worker
from mtlkit.workflows.train import RunResult, finished_run, train
from mtlkit.workflows.worker_start import start_worker_server

MULTI_TASK_RUN = "multi-task"
"""The multi-task run's name (its folder under ``<out>``); each single-task run's is
``single-<task>``."""
SINGLE_TASK_NICE = 5
"""The niceness added to each single-task run's worker. The multi-task run is the longest (it
computes every head); run at a higher priority, it takes a core of its own while the single-task
runs share the others, and they then finish together on every core, instead of it finishing
alone on one core while the rest idle (more workers than cores). Numbers are unchanged: only
the order in which the cores serve the runs is."""


@dataclass
class BaselineComparison:
    """A multi-task run against one single-task run per task."""

    rows: list[ComparisonRow]
    table: str
    report_path: Path
    seconds: float


def single_task_config(config: ExperimentConfig, task: str) -> ExperimentConfig:
    """``config`` restricted to ``task``, with plain (equal) weighting and its own name."""
    raw: dict[str, Any] = config.to_dict()
    raw["name"] = f"{config.name}-single-{task}"
    raw["tasks"]["include"] = [task]
    raw["balancer"] = {"name": "ew"}
    return parse_config(raw)


def default_workers(config: ExperimentConfig, runs: int) -> int:
    """The processes ``baselines`` trains its ``runs`` in by default: on a CPU of several cores
    all at once, up to 1.5 processes per core (the oversubscription measured on 2 cores by
    ``benchmarks/baselines_workers.py``: the demo's 3 runs at 1 thread each against one after
    another at 2 threads); one on a single core, on a GPU, or under torchrun (a process per
    device already)."""
    cores = os.cpu_count() or 1
    if cores == 1 or world_size() > 1 or resolve_device(config.train.device).type != "cpu":
        return 1
    return min(runs, cores + cores // 2)


def _nice(run: str) -> int:
    """The niceness added to ``run``'s worker (:data:`SINGLE_TASK_NICE` for a single-task run)."""
    return 0 if run == MULTI_TASK_RUN else SINGLE_TASK_NICE


def train_run(config: ExperimentConfig, path: Path, resume: bool) -> RunResult:
    """Train ``config`` into ``path``, resuming it there (``resume``) if it has started."""
    return train(config, path, resume=resume and RunDir(path).config.is_file())


def train_with_baselines(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    workers: int | None = None,
    threads: int | None = None,
) -> BaselineComparison:
    """Train ``config`` as is (``<out>/multi-task``) and, per task, the same network on that task
    alone (``<out>/single-<task>``); compare each task's primary test metric (every metric of a
    per-pixel task; the sign flipped where lower is better, as in Δm%) and write
    ``<out>/report.md`` (with ``report.html``) and ``<out>/comparison.json``
    (``<out>/config.yaml`` holds ``config``).

    The trainings run in ``workers`` processes at once (None: :func:`default_workers`), each on
    ``threads`` intra-op threads (None: ``OMP_NUM_THREADS`` if set, else the cores divided by
    the workers; one worker without either trains in this process as it is). A run's numbers
    depend on its configuration and thread count only, not on the workers.

    With ``resume`` the finished runs are read back, the interrupted ones resumed from their
    latest checkpoint and the others trained.

    Raises:
        LaunchError: ``workers`` > 1 in a process started by torchrun.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    runs = {MULTI_TASK_RUN: config}
    runs.update({f"single-{task}": single_task_config(config, task) for task in config.task_names})
    if workers is None:
        workers = default_workers(config, len(runs))
    elif workers < 1:
        raise ConfigError(f"--workers: give 1 or more, got {workers}.")
    elif workers > 1:
        refuse_several_processes(f"baselines with --workers {workers}")
    if is_main_process():
        folder = RunDir(out_dir)
        folder.check_writable()
        folder.write_config(config)
    finished = {
        name: finished_run(out_dir / name)
        for name in runs
        if resume and RunDir(out_dir / name).metrics.is_file()
    }
    jobs = [
        Job(name, train_run, (run_config, out_dir / name, resume), nice=_nice(name))
        for name, run_config in runs.items()
        if name not in finished
    ]
    threads = threads_per_worker(workers, threads)
    if workers == 1:
        with intra_op_threads(threads):
            trained = {job.name: job.target(*job.args) for job in jobs}
    else:
        if jobs:  # downloaded and built here once, not by every worker at the same time
            start_worker_server()  # it imports the training code meanwhile
            load_data(config)
        trained = run_jobs(jobs, workers, threads)
    results = {**finished, **trained}
    multi = results[MULTI_TASK_RUN]
    single = {task: results[f"single-{task}"].test[task] for task in multi.test}
    rows = [
        row
        for task, metric in multi.primary_metrics.items()
        for row in compare_reports(
            {task: multi.test[task]}, {task: single[task]}, delta_m_metrics(metric)
        )
    ]
    seconds = time.perf_counter() - start
    report_path = out_dir / "report.md"
    if is_main_process():
        document = run_document(
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
            figures=multi.figures(),
        )
        write_reports(out_dir, document)
        summary = {"rows": [asdict(row) for row in rows], "delta_m": delta_m(rows)}
        write_text_atomic(out_dir / "comparison.json", json.dumps(summary, indent=2))
    return BaselineComparison(rows, format_comparison_table(rows), report_path, seconds)
