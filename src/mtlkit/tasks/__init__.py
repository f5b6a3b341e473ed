"""Tasks: what each head predicts, its loss (with label masks), its metrics and their direction.

* :class:`Task` — the interface the training loop and the evaluation read;
* :class:`ClassificationTask` — single-label classification, cross-entropy with label smoothing;
* :mod:`mtlkit.tasks.metrics` — :class:`ClassificationMetrics` (an exact, DDP-reducible confusion
  matrix) and :class:`ClassificationReport`; :func:`higher_is_better` per metric name.
"""

from mtlkit.tasks.base import Task, TaskMetrics
from mtlkit.tasks.classification import ClassificationTask
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
    "ClassificationTask",
    "Task",
    "TaskMetrics",
    "higher_is_better",
]
