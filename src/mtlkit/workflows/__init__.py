"""Workflows: what ``mtlkit`` does with a configuration, each in its own module over one
run-folder module (:mod:`mtlkit.workflows.run_dir`) and one set of builders
(:mod:`mtlkit.workflows.build`).

* :func:`train` — one configuration, one run folder;
* :func:`train_with_baselines` — the configuration and one single-task run per task, compared
  (Δm%);
* :func:`evaluate_run` — a finished run's selected weights on its test split;
* :func:`export_run` — a finished run's selected weights as safetensors.
"""

from mtlkit.workflows.baselines import BaselineComparison, train_with_baselines
from mtlkit.workflows.evaluate import evaluate_run
from mtlkit.workflows.export import export_run
from mtlkit.workflows.run_dir import RunDir, prepare_resume, prepare_run_dir
from mtlkit.workflows.train import RunResult, train

__all__ = [
    "BaselineComparison",
    "RunDir",
    "RunResult",
    "evaluate_run",
    "export_run",
    "prepare_resume",
    "prepare_run_dir",
    "train",
    "train_with_baselines",
]
