"""Human-readable results: a markdown report file and a plain-text comparison table.

Rates are shown with 3 decimals, scalar metrics with 4, relative differences in signed % with 2;
undefined values (NaN) read ``n/a``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlkit.evaluation.compare import ComparisonRow, delta_m
from mtlkit.evaluation.document import (
    Block,
    Document,
    Heading,
    Paragraph,
    Table,
    column_widths,
    padded_cells,
    write_markdown,
)
from mtlkit.tasks import BinaryReport, MultilabelReport
from mtlkit.tasks.metrics import ClassificationReport

if TYPE_CHECKING:
    from mtlkit.evaluation.plots import RunFigures

_NA = "n/a"
_DELTA_M_NOTE = "mean signed relative difference; positive: multi-task better"
_METRIC_NAMES = {
    "macro_accuracy": "macro accuracy",
    "micro_f1": "micro F1",
    "macro_f1": "macro F1",
    "auroc": "AUROC",
    "f1": "F1",
    "map": "mAP",
    "mae": "MAE",
    "rmse": "RMSE",
    "mse": "MSE",
    "r2": "R²",
    "ece": "ECE",
    "miou": "mIoU",
    "pixel_accuracy": "pixel accuracy",
    "abs_err": "abs. error",
    "rel_err": "rel. error",
    "mean_angle": "mean angle °",
    "median_angle": "median angle °",
    "within_11_25": "% < 11.25°",
    "within_22_5": "% < 22.5°",
    "within_30": "% < 30°",
}
"""How a metric is headed in a table (others: their own name)."""


def format_comparison_table(rows: Sequence[ComparisonRow]) -> str:
    """Render ``rows`` as a fixed-width text table for the terminal, ending with a Δm% line.

    Columns are task, single-task value, multi-task value and relative difference %; a metric
    column is added when the rows compare more than one metric.

    Raises:
        ValueError: ``rows`` is empty.
    """
    if len(rows) == 0:
        raise ValueError("rows is empty: pass at least one ComparisonRow.")
    metrics = list(dict.fromkeys(row.metric for row in rows))
    if len(metrics) == 1:
        header = ["task", f"single-task {metrics[0]}", f"multi-task {metrics[0]}", "diff %"]
        table = _plain_table(header, [[row.task, *_comparison_cells(row)] for row in rows], 1)
    else:
        header = ["task", "metric", "single-task", "multi-task", "diff %"]
        body = [[row.task, row.metric, *_comparison_cells(row)] for row in rows]
        table = _plain_table(header, body, 2)
    return f"{table}\nΔm% = {delta_m(rows):+.2f} ({_DELTA_M_NOTE})"


def write_report(
    path: str | os.PathLike[str],
    *,
    title: str,
    run_info: Mapping[str, object],
    task_reports: Mapping[str, Any],
    comparison: Sequence[ComparisonRow] | None = None,
    history: Sequence[Mapping[str, object]] | None = None,
) -> Path:
    """Write a markdown report to ``path`` atomically (temporary file, then ``os.replace``).

    Args:
        path: the file to write, e.g. ``runs/demo/report.md``; missing parent folders are created.
        title: the report's heading.
        run_info: facts about the run (config name, method, seed, epochs, wall time, versions,
            ...), shown as a key/value table; nested mappings become dotted keys.
        task_reports: the final metrics per task, in display order: any report with
            ``summary()`` and ``num_samples`` (classification, binary, multilabel, regression);
            tasks whose reports have the same metrics share a table.
        comparison: rows against single-task baselines (see
            :func:`~mtlkit.evaluation.compare_reports`), shown with their Δm%.
        history: one mapping per epoch (or evaluation), shown as a table over the union of keys.

    Returns:
        The path written.

    Raises:
        ValueError: ``title`` is blank, or ``task_reports``, ``comparison`` or ``history`` is
            given but empty.
    """
    document = run_document(
        title=title,
        run_info=run_info,
        task_reports=task_reports,
        comparison=comparison,
        history=history,
    )
    return write_markdown(path, document)


def run_document(
    *,
    title: str,
    run_info: Mapping[str, object],
    task_reports: Mapping[str, Any],
    comparison: Sequence[ComparisonRow] | None = None,
    history: Sequence[Mapping[str, object]] | None = None,
    figures: RunFigures | None = None,
) -> Document:
    """The report of a run (or a baselines comparison) as a :class:`Document`.

    The arguments are those of :func:`write_report`; ``figures`` adds the plots of the run (its
    learning curves and task weights, its gradient cosines, the confusion matrices) for the HTML
    page.

    Raises:
        ValueError: as :func:`write_report`.
    """
    if not title.strip():
        raise ValueError("title is blank: give the report a heading.")
    if len(task_reports) == 0:
        raise ValueError("task_reports is empty: pass at least one task's report.")
    for name, value in (("comparison", comparison), ("history", history)):
        if value is not None and len(value) == 0:
            raise ValueError(f"{name} is empty: pass None to leave its section out.")
    document = Document(title.strip())
    document.add(*run_info_blocks(run_info), *_tasks_blocks(task_reports))
    if comparison is not None:
        document.add(*_comparison_blocks(comparison))
    if figures is not None:
        document.add(*figures.training_blocks(), *figures.map_blocks())
    if history is not None:
        document.add(*_history_blocks(history))
    for name, report in task_reports.items():
        document.add(*_task_detail_blocks(name, report, figures))
    return document


def run_info_blocks(run_info: Mapping[str, object]) -> list[Block]:
    """The "Run" section: a key/value table of ``run_info`` (nested keys dotted)."""
    rows = [[key, _value_cell(value)] for key, value in _flatten(run_info)]
    content: Block = Table(["key", "value"], rows, 2) if rows else Paragraph("(none given)")
    return [Heading("Run"), content]


def _tasks_blocks(task_reports: Mapping[str, Any]) -> list[Block]:
    """One table per kind of report (tasks of one type share their metric columns)."""
    groups: dict[tuple[str, ...], list[list[str]]] = {}
    for name, report in task_reports.items():
        summary = report.summary()
        groups.setdefault(tuple(summary), []).append(
            [name, *(_number(value, 4) for value in summary.values()), str(report.num_samples)]
        )
    tables: list[Block] = [
        Table(["task", *(_METRIC_NAMES.get(m, m) for m in metrics), "samples"], rows)
        for metrics, rows in groups.items()
    ]
    return [Heading("Results per task"), *tables]


def _comparison_blocks(comparison: Sequence[ComparisonRow]) -> list[Block]:
    header = ["task", "metric", "single-task", "multi-task", "relative difference %"]
    rows = [[row.task, row.metric, *_comparison_cells(row)] for row in comparison]
    delta = f"**Δm% = {delta_m(comparison):+.2f}** ({_DELTA_M_NOTE})"
    return [Heading("Multi-task vs single-task"), Table(header, rows, 2), Paragraph(delta)]


def _history_blocks(history: Sequence[Mapping[str, object]]) -> list[Block]:
    header = list(dict.fromkeys(key for entry in history for key in entry))
    rows = [[_value_cell(entry.get(key, "")) for key in header] for entry in history]
    return [Heading("History"), Table(header, rows)]


def _task_detail_blocks(name: str, report: Any, figures: RunFigures | None) -> list[Block]:
    """The per-class (or per-label) tables of one task; none for a regression."""
    if isinstance(report, ClassificationReport):
        return _classification_detail(name, report, figures)
    if isinstance(report, BinaryReport):
        confusion = Table(
            ["true \\ predicted", "0 (negative)", "1 (positive)"],
            [
                [f"{c} ({label})", *map(str, row)]
                for c, label, row in zip("01", ("negative", "positive"), report.confusion_matrix)
            ],
        )
        return [
            Heading(f"Task {name}"),
            Heading(
                "Confusion matrix at probability 0.5 (rows: true label, columns: predicted)", 3
            ),
            confusion,
        ]
    if isinstance(report, MultilabelReport):
        per_label = Table(
            ["label", "positives", "F1", "average precision"],
            [
                [label, str(support), _number(f1, 3), _number(ap, 3)]
                for label, support, f1, ap in zip(
                    report.labels, report.support, report.f1, report.average_precision
                )
            ],
        )
        return [Heading(f"Task {name}"), Heading("Per label (at probability 0.5)", 3), per_label]
    return []


def _classification_detail(
    name: str, report: ClassificationReport, figures: RunFigures | None
) -> list[Block]:
    classes = [str(c) for c in range(report.num_classes)]
    confusion = Table(
        ["true \\ predicted", *classes],
        [[c, *map(str, row)] for c, row in zip(classes, report.confusion_matrix)],
    )
    per_class = Table(
        ["class", "support", "TPR", "TNR", "PPV", "NPV", "FPR"],
        [
            [c, str(report.support[i]), *(_number(rates[i], 3) for rates in _rates(report))]
            for i, c in enumerate(classes)
        ],
    )
    blocks: list[Block] = [Heading(f"Task {name}")]
    if figures is not None:
        blocks.append(figures.confusion_block(name, report))
    blocks += [
        Heading("Confusion matrix (rows: true class, columns: predicted)", 3),
        confusion,
        Heading("Per class", 3),
        per_class,
    ]
    return blocks


def _rates(report: ClassificationReport) -> tuple[list[float], ...]:
    return report.tpr, report.tnr, report.ppv, report.npv, report.fpr


def _comparison_cells(row: ComparisonRow) -> list[str]:
    return [
        _number(row.single_task, 4),
        _number(row.multi_task, 4),
        f"{row.relative_difference:+.2f}",
    ]


def _flatten(info: Mapping[str, object], prefix: str = "") -> list[tuple[str, object]]:
    """Nested mappings become dotted keys: ``{"versions": {"torch": x}}`` → ``versions.torch``."""
    items: list[tuple[str, object]] = []
    for key, value in info.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items += _flatten(value, f"{name}.")
        else:
            items.append((name, value))
    return items


def _number(value: float, decimals: int) -> str:
    return _NA if math.isnan(value) else f"{value:.{decimals}f}"


def _value_cell(value: object) -> str:
    if isinstance(value, float):
        return _NA if math.isnan(value) else f"{value:.5g}"
    return "" if value is None else str(value)


def _plain_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """A fixed-width text table; columns after the first ``text_columns`` are right-aligned."""
    widths = column_widths([header, *rows])
    lines = [" | ".join(padded_cells(line, widths, text_columns)) for line in [header, *rows]]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)
