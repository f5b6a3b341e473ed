"""Evaluation: multi-task results against single-task baselines, and reports.

* :func:`compare_reports` (per task and metric) and :func:`compare_values` (any measures) build
  :class:`ComparisonRow` s; :func:`delta_m` averages their signed relative differences (Δm%,
  positive when multi-task is better); :func:`choose_by_validation` picks a sweep's tuned value
  on validation scores only.
* :func:`write_report` writes a run or a comparison to a markdown file;
  :func:`format_comparison_table` renders a comparison for the terminal; every report is also a
  :class:`~mtlkit.evaluation.document.Document`, rendered to Markdown and self-contained HTML
  with the figures of :mod:`mtlkit.evaluation.plots`.
* :func:`mean_ci` — a mean over seeds with its Student-t confidence interval;
  :func:`mean_ranks` — methods ranked per task, averaged over tasks.
* :class:`HeadEnsemble` and :func:`fit_weights` — heads of one label space combined by the
  weighted mean of their probabilities, the weights fitted on validation.
* :func:`pareto_front`, :func:`hypervolume` (exact) and :func:`das_dennis` (preference vectors)
  for trade-off sweeps; :mod:`mtlkit.evaluation.affinity` for task groupings from inter-task
  affinity (TAG).

The per-task metrics themselves (:class:`ClassificationMetrics`, :class:`ClassificationReport`)
belong to the tasks (:mod:`mtlkit.tasks.metrics`) and are re-exported here.
"""

from mtlkit.evaluation.compare import (
    Choice,
    ComparisonRow,
    choose_by_validation,
    compare_reports,
    compare_values,
    delta_m,
)
from mtlkit.evaluation.ensemble import HeadEnsemble, fit_weights
from mtlkit.evaluation.pareto import das_dennis, hypervolume, pareto_front
from mtlkit.evaluation.report import format_comparison_table, write_report
from mtlkit.evaluation.stats import MeanCI, mean_ci, mean_ranks
from mtlkit.tasks.metrics import (
    METRIC_DIRECTIONS,
    ClassificationMetrics,
    ClassificationReport,
    higher_is_better,
)

__all__ = [
    "METRIC_DIRECTIONS",
    "Choice",
    "ClassificationMetrics",
    "ClassificationReport",
    "ComparisonRow",
    "HeadEnsemble",
    "MeanCI",
    "choose_by_validation",
    "compare_reports",
    "compare_values",
    "das_dennis",
    "delta_m",
    "fit_weights",
    "format_comparison_table",
    "higher_is_better",
    "hypervolume",
    "mean_ci",
    "mean_ranks",
    "pareto_front",
    "write_report",
]
