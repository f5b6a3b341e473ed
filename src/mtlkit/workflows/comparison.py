"""A comparison of balancing methods as a result (``compare``, ``tune``): its rows, its table,
and the files it is written to (CSV, JSON, the reports). The grid that produces it is in
:mod:`mtlkit.workflows.compare`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mtlkit.config import ExperimentConfig
from mtlkit.evaluation.document import Block, Document, Figure, Heading, Paragraph, Table
from mtlkit.evaluation.stats import MeanCI
from mtlkit.workflows.run_dir import write_results
from mtlkit.workflows.sweeps import SweepCounts, trials_line

__all__ = [
    "DELTA_M_CONVENTION",
    "DIVERGED_ROW",
    "BaselineRow",
    "MethodComparison",
    "MethodRow",
    "write_comparison",
]

DELTA_M_CONVENTION = (
    "Δm%: mean over tasks of the relative change of the test metric (every metric of a "
    "per-pixel task) against the single-task baseline of the same seed, sign flipped for "
    "lower-is-better metrics; positive = multi-task better (Maninis et al. 2019)."
)
DIVERGED_ROW = "diverged at every tuned value"
"""What a method's row says when each of its tuned values has a run that diverged."""


@dataclass(frozen=True)
class BaselineRow:
    """One task's single-task baseline at its chosen value."""

    task: str
    chosen: str
    test: MeanCI
    val_scores: dict[str, float]


@dataclass(frozen=True)
class MethodRow:
    """One method at its chosen value.

    Attributes:
        method: the method's label.
        chosen: the chosen combination's label.
        test: per task, the test metric's mean ± CI over seeds.
        delta_m: Δm% against the single-task baselines, mean ± CI over seeds.
        mean_rank: the mean over tasks of the method's rank on the task's mean test metric.
        step_time: its median step time relative to the reference method.
        val_scores: per combination label, the mean validation score over seeds.
    """

    method: str
    chosen: str
    test: dict[str, MeanCI]
    delta_m: MeanCI
    mean_rank: float
    step_time: float
    val_scores: dict[str, float]


@dataclass
class MethodComparison:
    """The result of :func:`compare_methods`."""

    rows: list[MethodRow]
    baselines: dict[str, BaselineRow]
    metrics: dict[str, str]
    seeds: list[int]
    confidence: float
    reference: str
    out_dir: Path
    trained: int
    counts: SweepCounts = field(default_factory=SweepCounts)
    """What the study's trials did (over every call on this folder)."""
    diverged: dict[str, str] = field(default_factory=dict)
    """Per method that diverged at every tuned value, the names of its diverged runs."""

    @property
    def table(self) -> Table:
        """The comparison table (methods, then the single-task row)."""
        tasks = list(self.metrics)
        level = f"{round(self.confidence * 100)} % CI"
        header = [
            "method",
            "chosen",
            *(f"{task} {self.metrics[task]} (± {level})" for task in tasks),
            f"Δm% vs single-task (± {level}; + = multi-task better)",
            "mean rank",
            f"step time (× {self.reference}, from these runs)",
        ]
        body = [
            [
                row.method,
                row.chosen,
                *(row.test[task].format(4) for task in tasks),
                _signed(row.delta_m),
                f"{row.mean_rank:.2f}",
                f"{row.step_time:.2f}",
            ]
            for row in self.rows
        ]
        body += [
            [method, DIVERGED_ROW, *("—" for _ in tasks), "—", "—", "—"] for method in self.diverged
        ]
        chosen = "; ".join(f"{task}: {self.baselines[task].chosen}" for task in tasks)
        body.append(
            [
                "single-task",
                chosen,
                *(self.baselines[task].test.format(4) for task in tasks),
                "0 (reference)",
                "—",
                "—",
            ]
        )
        return Table(header, body, 2)

    def notes(self) -> list[str]:
        """What the table's numbers are, stated beside every rendering of it."""
        seeds = ", ".join(map(str, self.seeds))
        return [
            DELTA_M_CONVENTION,
            f"Mean over {len(self.seeds)} seeds ({seeds}) ± the half-width of the "
            f"{round(self.confidence * 100)} % confidence interval of the mean (Student's t, "
            f"{len(self.seeds) - 1} degrees of freedom); the seed also draws the benchmark's "
            "pairs and validation split, and each Δm% pairs a method's run with the baselines "
            "of its seed.",
            "Chosen: each method's (and each baseline's) tuned value, by the mean validation "
            "score over seeds; the test split was read once per run, at its end, and never for "
            "the choice.",
            f"Mean rank: rank on each task's mean test metric among the methods (1 = best), "
            f"averaged over tasks. Step time: median seconds per training step over the "
            f"method's runs, relative to {self.reference}, measured from these runs on a "
            "shared machine.",
        ]


def _signed(value: MeanCI) -> str:
    text = value.format(2)
    return text if text.startswith("-") else f"+{text}"


def write_comparison(
    result: MethodComparison,
    config: ExperimentConfig,
    combos: list[str],
    *,
    kind: str = "compare",
    tuning: Sequence[Block] = (),
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``<kind>.csv``, ``<kind>.json`` and the reports of ``result`` into its folder.

    ``tuning`` (``tune``'s account of its search) replaces the table of validation scores per
    value of ``combos``; ``extra`` joins the JSON summary.
    """
    tasks = list(result.metrics)
    header = [
        "method",
        "chosen",
        *(f"{task}_{suffix}" for task in tasks for suffix in ("mean", "ci")),
        "delta_m_percent_mean",
        "delta_m_percent_ci",
        "mean_rank",
        f"step_time_vs_{result.reference}",
    ]
    rows: list[list[object]] = [
        [
            row.method,
            row.chosen,
            *(
                value
                for task in tasks
                for value in (row.test[task].mean, row.test[task].half_width)
            ),
            row.delta_m.mean,
            row.delta_m.half_width,
            row.mean_rank,
            row.step_time,
        ]
        for row in result.rows
    ]
    rows += [[method, DIVERGED_ROW, *("" for _ in header[2:])] for method in result.diverged]
    baselines = [result.baselines[task] for task in tasks]
    rows.append(
        [
            "single-task",
            "; ".join(f"{base.task}: {base.chosen}" for base in baselines),
            *(value for base in baselines for value in (base.test.mean, base.test.half_width)),
            0.0,
            "",
            "",
            "",
        ]
    )
    summary = {
        "config": config.to_dict(),
        "seeds": result.seeds,
        "confidence": result.confidence,
        "reference": result.reference,
        "metrics": result.metrics,
        "grid": combos,
        "rows": [asdict(row) for row in result.rows],
        "diverged": result.diverged,
        "baselines": {task: asdict(row) for task, row in result.baselines.items()},
        "trials": asdict(result.counts),
        **(extra or {}),
    }
    document = _document(result, config, combos, kind, tuning)
    write_results(result.out_dir, kind, (header, rows), summary, document)


def _document(
    result: MethodComparison,
    config: ExperimentConfig,
    combos: list[str],
    kind: str,
    tuning: Sequence[Block],
) -> Document:
    from mtlkit.evaluation.plots import interval_png

    validation = tuning or [
        Heading("Validation score per tuned value"),
        Paragraph(
            "Mean over seeds of the selected epoch's validation score (mean over tasks of the "
            "signed primary metric); the chosen value is in bold."
        ),
        _validation_table(result, combos),
    ]
    document = Document(f"mtlkit {kind}: {config.name}")
    document.add(
        Heading("Methods against single-task baselines"),
        result.table,
        *(Paragraph(note) for note in result.notes()),
        *(
            [
                Figure(
                    interval_png(
                        [row.method for row in result.rows],
                        [row.delta_m.mean for row in result.rows],
                        [row.delta_m.half_width for row in result.rows],
                        title=f"Δm% vs single-task, mean ± {round(result.confidence * 100)} % CI",
                    ),
                    "Δm% per method with its confidence interval (positive: multi-task better)",
                )
            ]
            if result.rows
            else []
        ),
        *validation,
        Heading("Setup"),
        Table(
            ["key", "value"],
            [
                ["benchmark", f"{config.data.benchmark} ({config.data.protocol})"],
                ["backbone", config.model.backbone],
                ["epochs", str(config.train.epochs)],
                ["optimizer", f"{config.optim.name}, lr {config.optim.lr}"],
                ["schedule", config.schedule.name],
                ["seeds", ", ".join(map(str, result.seeds))],
                ["tuned", "; ".join(combos)],
                ["runs trained by this call", str(result.trained)],
                ["trials (all calls)", trials_line(result.counts)],
                ["cells", str(result.out_dir / "cells")],
            ],
            2,
        ),
    )
    return document


def _validation_table(result: MethodComparison, combos: list[str]) -> Table:
    def cells(scores: Mapping[str, float], chosen: str) -> list[str]:
        return [f"**{scores[c]:.4f}**" if c == chosen else f"{scores[c]:.4f}" for c in combos]

    rows = [[row.method, *cells(row.val_scores, row.chosen)] for row in result.rows]
    rows += [
        [f"single-task {task}", *cells(base.val_scores, base.chosen)]
        for task, base in result.baselines.items()
    ]
    return Table(["method", *combos], rows)
