"""Evaluation: per-task metrics, comparison with single-task baselines, reports.

* :class:`ClassificationMetrics` accumulates one classification task's predictions over batches
  (and over processes under ``torch.distributed``) and computes a :class:`ClassificationReport`:
  accuracy, balanced accuracy, micro/macro F1, the confusion matrix and per-class
  TPR/TNR/PPV/NPV/FPR.
* :func:`compare_reports`, :func:`relative_difference` and :func:`delta_m` measure a multi-task
  model against single-task baselines (Δm%, positive when multi-task is better).
* :func:`write_report` writes everything to a markdown file; :func:`format_comparison_table`
  renders the comparison for the terminal.
"""

from mtlkit.evaluation.compare import (
    ComparisonRow,
    compare_reports,
    delta_m,
    delta_m_from_rows,
    relative_difference,
)
from mtlkit.evaluation.metrics import (
    METRIC_DIRECTIONS,
    ClassificationMetrics,
    ClassificationReport,
    higher_is_better,
)
from mtlkit.evaluation.report import format_comparison_table, write_report

__all__ = [
    "METRIC_DIRECTIONS",
    "ClassificationMetrics",
    "ClassificationReport",
    "ComparisonRow",
    "compare_reports",
    "delta_m",
    "delta_m_from_rows",
    "format_comparison_table",
    "higher_is_better",
    "relative_difference",
    "write_report",
]
