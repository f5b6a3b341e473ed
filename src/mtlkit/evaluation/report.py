"""Human-readable results: a markdown report file and a plain-text comparison table.

Rates are shown with 3 decimals, scalar metrics with 4, relative differences in signed % with 2;
undefined values (NaN) read ``n/a``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtlkit.atomic import write_text_atomic
from mtlkit.evaluation.compare import ComparisonRow, delta_m
from mtlkit.tasks import BinaryReport, MultilabelReport
from mtlkit.tasks.metrics import ClassificationReport

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
    if not title.strip():
        raise ValueError("title is blank: give the report a heading.")
    if len(task_reports) == 0:
        raise ValueError("task_reports is empty: pass at least one task's report.")
    for name, value in (("comparison", comparison), ("history", history)):
        if value is not None and len(value) == 0:
            raise ValueError(f"{name} is empty: pass None to leave its section out.")
    sections = [f"# {title.strip()}", _run_section(run_info), _tasks_section(task_reports)]
    if comparison is not None:
        sections.append(_comparison_section(comparison))
    if history is not None:
        sections.append(_history_section(history))
    details = (_task_detail_section(name, report) for name, report in task_reports.items())
    sections += [detail for detail in details if detail is not None]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, "\n\n".join(sections) + "\n")
    return target


def _run_section(run_info: Mapping[str, object]) -> str:
    rows = [[key, _value_cell(value)] for key, value in _flatten(run_info)]
    table = _markdown_table(["key", "value"], rows, text_columns=2) if rows else "(none given)"
    return f"## Run\n\n{table}"


def _tasks_section(task_reports: Mapping[str, Any]) -> str:
    groups: dict[tuple[str, ...], list[list[str]]] = {}
    for name, report in task_reports.items():
        summary = report.summary()
        groups.setdefault(tuple(summary), []).append(
            [name, *(_number(value, 4) for value in summary.values()), str(report.num_samples)]
        )
    tables = [
        _markdown_table(["task", *(_METRIC_NAMES.get(m, m) for m in metrics), "samples"], rows)
        for metrics, rows in groups.items()
    ]
    return "## Results per task\n\n" + "\n\n".join(tables)


def _comparison_section(comparison: Sequence[ComparisonRow]) -> str:
    header = ["task", "metric", "single-task", "multi-task", "relative difference %"]
    rows = [[row.task, row.metric, *_comparison_cells(row)] for row in comparison]
    table = _markdown_table(header, rows, text_columns=2)
    delta = f"**Δm% = {delta_m(comparison):+.2f}** ({_DELTA_M_NOTE})"
    return f"## Multi-task vs single-task\n\n{table}\n\n{delta}"


def _history_section(history: Sequence[Mapping[str, object]]) -> str:
    header = list(dict.fromkeys(key for entry in history for key in entry))
    rows = [[_value_cell(entry.get(key, "")) for key in header] for entry in history]
    return f"## History\n\n{_markdown_table(header, rows)}"


def _task_detail_section(name: str, report: Any) -> str | None:
    """The per-class (or per-label) tables of one task; ``None`` for a regression."""
    if isinstance(report, ClassificationReport):
        return _classification_detail(name, report)
    if isinstance(report, BinaryReport):
        confusion = _markdown_table(
            ["true \\ predicted", "0 (negative)", "1 (positive)"],
            [
                [f"{c} ({label})", *map(str, row)]
                for c, label, row in zip("01", ("negative", "positive"), report.confusion_matrix)
            ],
        )
        return (
            f"## Task {name}\n\n### Confusion matrix at probability 0.5 (rows: true label, "
            f"columns: predicted)\n\n{confusion}"
        )
    if isinstance(report, MultilabelReport):
        per_label = _markdown_table(
            ["label", "positives", "F1", "average precision"],
            [
                [label, str(support), _number(f1, 3), _number(ap, 3)]
                for label, support, f1, ap in zip(
                    report.labels, report.support, report.f1, report.average_precision
                )
            ],
        )
        return f"## Task {name}\n\n### Per label (at probability 0.5)\n\n{per_label}"
    return None


def _classification_detail(name: str, report: ClassificationReport) -> str:
    classes = [str(c) for c in range(report.num_classes)]
    confusion = _markdown_table(
        ["true \\ predicted", *classes],
        [[c, *map(str, row)] for c, row in zip(classes, report.confusion_matrix)],
    )
    per_class = _markdown_table(
        ["class", "support", "TPR", "TNR", "PPV", "NPV", "FPR"],
        [
            [c, str(report.support[i]), *(_number(rates[i], 3) for rates in _rates(report))]
            for i, c in enumerate(classes)
        ],
    )
    return (
        f"## Task {name}\n\n### Confusion matrix (rows: true class, columns: predicted)\n\n"
        f"{confusion}\n\n### Per class\n\n{per_class}"
    )


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


def _markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1
) -> str:
    """A padded pipe table; columns after the first ``text_columns`` are right-aligned."""
    lines = [[_escape(cell) for cell in line] for line in [header, *rows]]
    widths = _widths(lines)
    rule = [
        "-" * width if i < text_columns else "-" * (width - 1) + ":"
        for i, width in enumerate(widths)
    ]
    padded = [_padded(line, widths, text_columns) for line in lines]
    return "\n".join("| " + " | ".join(line) + " |" for line in [padded[0], rule, *padded[1:]])


def _plain_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int) -> str:
    """A fixed-width text table; columns after the first ``text_columns`` are right-aligned."""
    widths = _widths([header, *rows])
    lines = [" | ".join(_padded(line, widths, text_columns)) for line in [header, *rows]]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def _widths(lines: Sequence[Sequence[str]]) -> list[int]:
    return [max(3, *(len(line[i]) for line in lines)) for i in range(len(lines[0]))]


def _padded(cells: Sequence[str], widths: Sequence[int], text_columns: int) -> list[str]:
    return [
        cell.ljust(width) if i < text_columns else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths))
    ]


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\r", " ").replace("\n", " ")
