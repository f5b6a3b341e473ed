"""Evaluation: multi-task results against single-task baselines, and reports.

* :func:`compare_reports` (per task and metric) and :func:`compare_values` (any measures) build
  :class:`ComparisonRow` s; :func:`delta_m` averages their signed relative differences (Δm%,
  positive when multi-task is better).
* :func:`write_report` writes a run or a comparison to a markdown file;
  :func:`format_comparison_table` renders a comparison for the terminal.

The per-task metrics themselves (:class:`ClassificationMetrics`, :class:`ClassificationReport`)
belong to the tasks (:mod:`mtlkit.tasks.metrics`) and are re-exported here.
"""

from mtlkit.evaluation.compare import ComparisonRow, compare_reports, compare_values, delta_m
from mtlkit.evaluation.report import format_comparison_table, write_report
from mtlkit.tasks.metrics import (
    METRIC_DIRECTIONS,
    ClassificationMetrics,
    ClassificationReport,
    higher_is_better,
)

__all__ = [
    "METRIC_DIRECTIONS",
    "ClassificationMetrics",
    "ClassificationReport",
    "ComparisonRow",
    "compare_reports",
    "compare_values",
    "delta_m",
    "format_comparison_table",
    "higher_is_better",
    "write_report",
]
