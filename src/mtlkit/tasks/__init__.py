"""Tasks: what each head predicts, its loss (with label masks), its metrics and their direction.

* :class:`Task` — the interface the training loop and the evaluation read;
* one module per type, each registered in :data:`TASK_TYPES` (what ``tasks.<name>.type`` of a
  config chooses from): :class:`ClassificationTask` (cross-entropy, label smoothing),
  :class:`BinaryTask` (BCE; accuracy, AUROC, F1), :class:`MultilabelTask` (BCE over L labels;
  micro/macro F1, mAP), :class:`RegressionTask` (MSE, L1 or Huber; MAE, RMSE, R²), and the
  per-pixel types :class:`SegmentationTask` (mIoU, pixel accuracy), :class:`DepthTask`
  (absolute and relative error) and :class:`NormalsTask` (angle errors);
* :func:`create_task` — the task a :class:`~mtlkit.data.TaskSpec` describes;
* :mod:`mtlkit.tasks.metrics` — :class:`ClassificationMetrics` (an exact, DDP-reducible confusion
  matrix) and :class:`ClassificationReport`; :func:`higher_is_better` per metric name.
"""

from mtlkit.tasks.base import Task, TaskMetrics, masked_mean
from mtlkit.tasks.binary import BinaryMetrics, BinaryReport, BinaryTask
from mtlkit.tasks.classification import ClassificationTask
from mtlkit.tasks.depth import DepthMetrics, DepthReport, DepthTask
from mtlkit.tasks.metrics import (
    METRIC_DIRECTIONS,
    ClassificationMetrics,
    ClassificationReport,
    higher_is_better,
)
from mtlkit.tasks.multilabel import MultilabelMetrics, MultilabelReport, MultilabelTask
from mtlkit.tasks.normals import NormalsMetrics, NormalsReport, NormalsTask
from mtlkit.tasks.registry import TASK_TYPES, TaskType, create_task, delta_m_metrics
from mtlkit.tasks.regression import RegressionMetrics, RegressionReport, RegressionTask
from mtlkit.tasks.segmentation import (
    IGNORE_INDEX,
    SegmentationMetrics,
    SegmentationReport,
    SegmentationTask,
)

__all__ = [
    "IGNORE_INDEX",
    "METRIC_DIRECTIONS",
    "TASK_TYPES",
    "BinaryMetrics",
    "BinaryReport",
    "BinaryTask",
    "ClassificationMetrics",
    "ClassificationReport",
    "ClassificationTask",
    "DepthMetrics",
    "DepthReport",
    "DepthTask",
    "MultilabelMetrics",
    "MultilabelReport",
    "MultilabelTask",
    "NormalsMetrics",
    "NormalsReport",
    "NormalsTask",
    "RegressionMetrics",
    "RegressionReport",
    "RegressionTask",
    "SegmentationMetrics",
    "SegmentationReport",
    "SegmentationTask",
    "Task",
    "TaskMetrics",
    "TaskType",
    "create_task",
    "delta_m_metrics",
    "higher_is_better",
    "masked_mean",
]
