"""Workflows: what ``mtlkit`` does with a configuration, each in its own module over one
run-folder module (:mod:`mtlkit.workflows.run_dir`) and one set of builders
(:mod:`mtlkit.workflows.build`).

* :func:`train` — one configuration, one run folder;
* :func:`train_with_baselines` — the configuration and one single-task run per task, compared
  (Δm%);
* :func:`evaluate_run` — a finished run's selected weights on its test split, or on a labelled
  table that was not part of training;
* :func:`predict` — a finished run applied to new rows (or images), every task's prediction
  written as a table;
* :func:`export_run` — a finished run's selected weights as safetensors;
* :func:`export_onnx` — a finished run's network as one ONNX graph, checked by onnxruntime;
* :func:`load_run` — a finished run in Python (``mtlkit.load``), ready to ``predict``.
"""

from mtlkit.workflows.baselines import BaselineComparison, train_with_baselines
from mtlkit.workflows.evaluate import evaluate_run
from mtlkit.workflows.export import export_run
from mtlkit.workflows.load import LoadedRun, load_run
from mtlkit.workflows.onnx_export import ExportError, export_onnx
from mtlkit.workflows.predict import Predictions, predict
from mtlkit.workflows.restore import TrainedRun, restore_run
from mtlkit.workflows.run_dir import RunDir, prepare_resume, prepare_run_dir
from mtlkit.workflows.train import RunResult, train

__all__ = [
    "BaselineComparison",
    "ExportError",
    "LoadedRun",
    "Predictions",
    "RunDir",
    "RunResult",
    "TrainedRun",
    "evaluate_run",
    "export_onnx",
    "export_run",
    "load_run",
    "predict",
    "prepare_resume",
    "prepare_run_dir",
    "restore_run",
    "train",
    "train_with_baselines",
]
