"""Head ensembles: the heads of tasks that share a label space (the same classes) combined by
the weighted mean of their probabilities, the weights fitted on the validation split, scored on
the test split against one task's labels — a row of its own beside each head's. Configured
(``ensembles``), they are part of every run's results; ``mtlkit ensemble`` makes one for a
finished run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtlkit.config import ConfigError, ExperimentConfig
from mtlkit.data import MultiTaskData, Split
from mtlkit.evaluation import HeadEnsemble, fit_weights
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import ClassificationTask, Task
from mtlkit.tasks.metrics import ClassificationMetrics
from mtlkit.workflows.build import load_data
from mtlkit.workflows.restore import restore_run


@dataclass(frozen=True)
class EnsembleResult:
    """An ensemble of a run's heads and its test scores.

    Attributes:
        ensemble: the heads and their fitted weights.
        target: the task whose labels the heads are scored against.
        rows: each head's test report against ``target``'s labels (by task), then the
            ensemble's (``"ensemble"``).
    """

    ensemble: HeadEnsemble
    target: str
    rows: dict[str, Any]

    def table(self) -> str:
        """One line per head and one for the ensemble: weight and test metrics."""
        weights = dict(zip(self.ensemble.tasks, self.ensemble.weights))
        metrics = list(next(iter(self.rows.values())).summary())
        lines = [f"{'head':<12} {'weight':>7} " + " ".join(f"{m:>10}" for m in metrics)]
        for name, report in self.rows.items():
            weight = f"{weights[name]:.4f}" if name in weights else ""
            values = " ".join(f"{report.summary()[m]:>10.4f}" for m in metrics)
            lines.append(f"{name:<12} {weight:>7} {values}")
        return "\n".join(lines)


def ensemble_heads(
    run_dir: str | Path, tasks: Sequence[str], target: str | None = None, device: str = "cpu"
) -> EnsembleResult:
    """Combine the heads of ``tasks`` of the run in ``run_dir``, scored against ``target``'s
    labels (default: the first task's); the weights are fitted on the run's validation split.

    Raises:
        ConfigError: fewer than two tasks, a task the run lacks or that is not a classification,
            tasks with different classes, a target outside ``tasks``, or a run without a
            validation split.
    """
    run = restore_run(run_dir, device)
    if len(tasks) < 2 or len(set(tasks)) != len(tasks):
        raise ConfigError(f"--tasks {','.join(tasks)}: name two or more distinct tasks.")
    known = [task.name for task in run.tasks]
    for name in tasks:
        if name not in known:
            raise ConfigError(
                f"--tasks: the run has no task {name!r}; its tasks: {', '.join(known)}."
            )
    members = ensemble_members(run.tasks, tasks, "--tasks")
    target = target or members[0].name
    if target not in tasks:
        raise ConfigError(
            f"--target {target}: choose one of the ensemble's tasks: {', '.join(tasks)}."
        )
    data = load_data(run.config)
    if data.val is None:
        raise ConfigError(
            f"{run_dir}: the run has no validation split (data.val_fraction: 0) to fit the "
            "weights on; retrain it with one."
        )
    return score_ensemble(run.model, members, target, data.val, data.test, run.device)


def ensemble_members(
    tasks: Sequence[Task], names: Sequence[str], key: str
) -> list[ClassificationTask]:
    """The ``tasks`` named ``names``, checked to be classifications of one label space (the
    same number of classes and class names).

    Raises:
        ConfigError: naming ``key``, a task that is not a classification or another label
            space.
    """
    known = {task.name: task for task in tasks}
    members = []
    for name in names:
        task = known[name]
        if not isinstance(task, ClassificationTask):
            raise ConfigError(f"{key}: {name!r} is not a classification task.")
        members.append(task)
    first = members[0]
    for task in members[1:]:
        if task.num_classes != first.num_classes or task.labels != first.labels:
            raise ConfigError(
                f"{key}: {first.name!r} and {task.name!r} do not share a label space "
                f"({first.num_classes} and {task.num_classes} classes"
                f"{'' if task.labels == first.labels else ', other class names'})."
            )
    return members


def check_ensembles(config: ExperimentConfig, tasks: Sequence[Task], data: MultiTaskData) -> None:
    """Refuse, before training, a configured ensemble (``ensembles``) whose heads are not
    classifications of one label space, or data without a validation split to fit it on."""
    for name, entry in config.ensembles.items():
        ensemble_members(tasks, entry.tasks, f"ensembles.{name}.tasks")
        if data.val is None:
            raise ConfigError(
                f"ensembles.{name}: its weights are fitted on the validation split, and the "
                "data has none; set data.val_fraction above 0."
            )


def score_ensemble(
    model: MultiTaskModel,
    members: Sequence[ClassificationTask],
    target: str,
    val: Split | dict[str, Split],
    test: Split | dict[str, Split],
    device: torch.device,
) -> EnsembleResult:
    """Fit the weights of ``members``' heads on ``val`` against ``target``'s labels; score each
    head and the ensemble on ``test``."""
    names = [task.name for task in members]
    val_outputs, val_targets = _outputs(model, _split(val, target), target, device)
    weights = fit_weights([torch.softmax(val_outputs[n], -1) for n in names], val_targets)
    ensemble = HeadEnsemble(tuple(names), weights)
    test_outputs, test_targets = _outputs(model, _split(test, target), target, device)
    scorer = next(task for task in members if task.name == target)
    rows = {name: _score(scorer, test_outputs[name], test_targets) for name in names}
    combined = ensemble.probabilities(test_outputs).clamp_min(torch.finfo(torch.float32).tiny)
    rows["ensemble"] = _score(scorer, combined.log(), test_targets)
    return EnsembleResult(ensemble, target, rows)


def run_ensembles(
    config: ExperimentConfig,
    model: MultiTaskModel,
    tasks: Sequence[Task],
    data: MultiTaskData,
    device: torch.device,
) -> dict[str, EnsembleResult]:
    """Every ensemble of the config (``ensembles``), fitted and scored on the trained model."""
    check_ensembles(config, tasks, data)
    return {
        name: score_ensemble(
            model,
            ensemble_members(tasks, entry.tasks, f"ensembles.{name}.tasks"),
            entry.target or entry.tasks[0],
            data.val,  # type: ignore[arg-type]  # check_ensembles: not None
            data.test,
            device,
        )
        for name, entry in config.ensembles.items()
    }


def ensemble_record(results: dict[str, EnsembleResult]) -> dict[str, Any]:
    """Plain values of configured ensembles' results (``metrics.json``): per ensemble its
    tasks, weights, target, and each row's test report."""
    return {
        name: {
            "tasks": list(result.ensemble.tasks),
            "weights": list(result.ensemble.weights),
            "target": result.target,
            "test": {row: report.to_dict() for row, report in result.rows.items()},
        }
        for name, result in results.items()
    }


def ensemble_rows(results: dict[str, EnsembleResult]) -> dict[str, Any]:
    """The ensembles' test reports as rows beside the tasks': ``<name> (ensemble → target)``."""
    return {
        f"{name} (ensemble → {result.target})": result.rows["ensemble"]
        for name, result in results.items()
    }


def _split(split: Split | dict[str, Split], task: str) -> Split:
    """The split holding ``task``'s labels (one dataset per task: the task's own)."""
    return split[task] if isinstance(split, dict) else split


@torch.no_grad()
def _outputs(
    model: MultiTaskModel, split: Split, target: str, device: torch.device
) -> tuple[dict[str, Tensor], Tensor]:
    """Every head's logits for the rows of ``split`` that hold ``target``'s label, and those
    labels."""
    mask = split.masks.get(target)
    rows = slice(None) if mask is None else mask
    inputs, labels = split.inputs[rows], split.targets[target][rows]
    model.eval()
    parts = [model(chunk.to(device)) for chunk in inputs.split(1024)]
    outputs = {name: torch.cat([part[name] for part in parts]).cpu() for name in parts[0]}
    return outputs, labels


def _score(task: ClassificationTask, output: Tensor, labels: Tensor) -> Any:
    """The report of ``task``'s metrics for ``output`` against ``labels`` (this process's alone:
    under torchrun the main process scores the whole split while the others wait)."""
    metrics = ClassificationMetrics(task.num_classes, sync=False)
    metrics.update(output, labels)
    return metrics.compute()
