"""Multi-task results against single-task baselines: relative differences and Δm.

Following Maninis et al. (2019) and Vandenhende et al. (2021), as LibMTL reports it, the overall
multi-task performance is

    Δm% = (100 / K) Σₖ (−1)^{lₖ} (M_mtl,k − M_stl,k) / M_stl,k,

where ``lₖ = 1`` when a lower value of measure k is better. Every relative difference here carries
that sign, so a positive value always means the multi-task model does better. Baselines are assumed
positive (accuracies, F1 scores, losses), as in the definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mtlkit.tasks.metrics import ClassificationReport
from mtlkit.tasks.metrics import higher_is_better as _metric_higher_is_better


@dataclass(frozen=True)
class ComparisonRow:
    """One measure of one task, single-task baseline against multi-task model.

    Raises:
        ValueError: a value is not finite, or the baseline is zero (the relative difference would
            be undefined).
    """

    task: str
    metric: str
    single_task: float
    multi_task: float
    higher_is_better: bool

    def __post_init__(self) -> None:
        self._relative()

    @property
    def relative_difference(self) -> float:
        """Signed relative difference in %, positive when the multi-task model is better."""
        return self._relative()

    def _relative(self) -> float:
        return _signed_relative(
            f"{self.task}/{self.metric}", self.multi_task, self.single_task, self.higher_is_better
        )


def delta_m(rows: Sequence[ComparisonRow]) -> float:
    """Δm% over ``rows``: the mean of their signed relative differences (positive: multi-task
    better). Build the rows with :func:`compare_reports` or :func:`compare_values`.

    Raises:
        ValueError: ``rows`` is empty.
    """
    if len(rows) == 0:
        raise ValueError("rows is empty: pass at least one ComparisonRow.")
    return sum(row.relative_difference for row in rows) / len(rows)


def compare_reports(
    multi_task: Mapping[str, ClassificationReport],
    single_task: Mapping[str, ClassificationReport],
    metrics: Sequence[str] = ("accuracy",),
) -> list[ComparisonRow]:
    """One row per task (in ``multi_task`` order) and summary metric, ready for a report.

    ``metrics`` are keys of :meth:`ClassificationReport.summary`; their directions come from
    :data:`~mtlkit.evaluation.METRIC_DIRECTIONS`.

    Raises:
        ValueError: the two mappings do not hold the same tasks, ``metrics`` is empty or names a
            metric that the summary lacks, or a row is invalid (see :class:`ComparisonRow`).
    """
    _check_same_keys(multi_task, single_task, "multi_task", "single_task")
    if len(metrics) == 0:
        raise ValueError('metrics is empty: name at least one metric, e.g. ("accuracy",).')
    rows = []
    for task, report in multi_task.items():
        mtl_summary, stl_summary = report.summary(), single_task[task].summary()
        for metric in metrics:
            if metric not in mtl_summary:
                raise ValueError(
                    f"metrics names {metric!r}, which a report summary lacks: use some of "
                    f"{', '.join(mtl_summary)}."
                )
            rows.append(
                ComparisonRow(
                    task=task,
                    metric=metric,
                    single_task=stl_summary[metric],
                    multi_task=mtl_summary[metric],
                    higher_is_better=_metric_higher_is_better(metric),
                )
            )
    return rows


def compare_values(
    mtl: Mapping[str, float],
    stl: Mapping[str, float],
    higher_is_better: Mapping[str, bool],
    metric: str = "value",
) -> list[ComparisonRow]:
    """One row per key of ``mtl`` (a task name, or any measure such as ``"task/loss"``).

    Args:
        mtl: multi-task value per key.
        stl: single-task baseline per key; must hold exactly the keys of ``mtl``.
        higher_is_better: direction per key; may hold further keys.
        metric: the ``metric`` field of every row.

    Raises:
        ValueError: ``mtl`` is empty, the keys do not match, a direction is missing, a value is
            not finite or a baseline is zero.
    """
    if len(mtl) == 0:
        raise ValueError("mtl is empty: pass at least one task's value.")
    _check_same_keys(mtl, stl, "mtl", "stl")
    missing = [key for key in mtl if key not in higher_is_better]
    if missing:
        raise ValueError(
            f"higher_is_better lacks {', '.join(map(repr, missing))}: give a direction per key."
        )
    return [
        ComparisonRow(key, metric, float(stl[key]), float(mtl[key]), bool(higher_is_better[key]))
        for key in mtl
    ]


def _signed_relative(label: str, multi_task: float, single_task: float, higher: bool) -> float:
    """``±100 (multi_task − single_task) / single_task``, signed so that positive is better."""
    for name, value in (("multi-task", multi_task), ("single-task", single_task)):
        if not math.isfinite(value):
            raise ValueError(f"the {name} value of {label} is {value}: compare finite values only.")
    if single_task == 0:
        raise ValueError(
            f"the single-task value of {label} is 0, so the relative difference is undefined: "
            "compare a measure whose baseline is nonzero."
        )
    sign = 1.0 if higher else -1.0
    return 100.0 * sign * (multi_task - single_task) / single_task


def _check_same_keys(
    first: Mapping[str, object], second: Mapping[str, object], first_name: str, second_name: str
) -> None:
    """Raise naming the keys that only one of the two mappings holds."""
    parts = []
    only_first = [key for key in first if key not in second]
    only_second = [key for key in second if key not in first]
    if only_first:
        parts.append(f"{second_name} lacks {', '.join(map(repr, only_first))}")
    if only_second:
        parts.append(f"{first_name} lacks {', '.join(map(repr, only_second))}")
    if parts:
        raise ValueError(f"{'; '.join(parts)}: give both the same tasks.")


@dataclass(frozen=True)
class Choice:
    """The tuned value chosen for one method (or baseline) by validation.

    Attributes:
        index: the chosen value's position in the grid; ``None`` when every value scores −∞
            (each has a run that diverged): there is nothing to choose.
        val_scores: per value (grid order), the mean over seeds of the validation score.
    """

    index: int | None
    val_scores: list[float]


def choose_by_validation(val_scores: Sequence[Sequence[float]]) -> Choice:
    """Choose among tuned values by their mean validation score over seeds (the first of
    equals); a seed whose run diverged scores −∞, so its value is never chosen.

    Args:
        val_scores: per value (grid order), one validation score per seed. Only validation
            scores are read: test metrics cannot change the choice.

    Raises:
        ValueError: no value, or a value without scores.
    """
    if not val_scores or any(len(seeds) == 0 for seeds in val_scores):
        raise ValueError("val_scores: give one or more values, each with one or more scores.")
    means = [math.fsum(seeds) / len(seeds) for seeds in val_scores]
    index = max(range(len(means)), key=lambda i: (means[i], -i))
    return Choice(index=None if means[index] == -math.inf else index, val_scores=means)
