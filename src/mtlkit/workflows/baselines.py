"""Multi-task against single-task: the config as is, and the same network on each task alone."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtlkit.atomic import write_text_atomic
from mtlkit.config import ExperimentConfig, parse_config
from mtlkit.evaluation import ComparisonRow, compare_reports, delta_m, format_comparison_table
from mtlkit.evaluation.document import write_reports
from mtlkit.evaluation.report import run_document
from mtlkit.tasks import delta_m_metrics
from mtlkit.training.distributed import is_main_process
from mtlkit.workflows.run_dir import RunDir
from mtlkit.workflows.train import RunResult, finished_run, train


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


def train_with_baselines(
    config: ExperimentConfig, out_dir: str | Path, *, resume: bool = False
) -> BaselineComparison:
    """Train ``config`` as is (``<out>/multi-task``) and, per task, the same network on that task
    alone (``<out>/single-<task>``); compare each task's primary test metric (every metric of a
    per-pixel task; the sign flipped where lower is better, as in Δm%) and write
    ``<out>/report.md`` (with ``report.html``) and ``<out>/comparison.json``
    (``<out>/config.yaml`` holds ``config``).

    With ``resume`` the finished runs are read back, the interrupted one resumed from its latest
    checkpoint and the others trained.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if is_main_process():
        folder = RunDir(out_dir)
        folder.check_writable()
        folder.write_config(config)

    def run(run_config: ExperimentConfig, name: str) -> RunResult:
        path = out_dir / name
        if resume and RunDir(path).metrics.is_file():
            return finished_run(path)
        return train(run_config, path, resume=resume and RunDir(path).config.is_file())

    multi = run(config, "multi-task")
    single = {
        task: run(single_task_config(config, task), f"single-{task}").test[task]
        for task in multi.test
    }
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
