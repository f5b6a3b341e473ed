"""Add a task to a trained run: a new head (or several) trained on the new task's data, the
trunk frozen or updated, and the run's old tasks scored on their test split before and after —
backward transfer (BWT), the mean change of the old tasks' primary metric, as in continual
learning: positive, adding the task helped them; negative, it cost them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlkit.config import ConfigError
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.training import evaluate
from mtlkit.workflows.build import build_tasks, eval_batches, load_data
from mtlkit.workflows.cells import refuse_several_processes
from mtlkit.workflows.run_dir import SavedData
from mtlkit.workflows.train import RunResult
from mtlkit.workflows.transfer import derive_from_run, fit_into_run_dir, transferred_model


@dataclass
class AddTaskResult:
    """A run with tasks added, and what that did to the old tasks.

    Attributes:
        run: the new run (its test metrics: the tasks it trained).
        new_tasks: the tasks added.
        before: each old task's primary test metric in the original run.
        after: the same, with the new run's weights.
        bwt: the backward transfer: the mean over old tasks of ``after − before``, the sign of
            a lower-is-better metric flipped (positive: the old tasks gained).
    """

    run: RunResult
    new_tasks: list[str]
    before: dict[str, float]
    after: dict[str, float]
    bwt: float


def backward_transfer(
    tasks: Sequence[Task], before: dict[str, float], after: dict[str, float]
) -> float:
    """The mean over ``tasks`` of ``after − before``, signed so that positive is better."""
    changes = [(after[t.name] - before[t.name]) * (1 if t.higher_is_better else -1) for t in tasks]
    return sum(changes) / len(changes)


def add_task(
    run_dir: str | Path,
    config_path: str | Path | None,
    out_dir: str | Path,
    overrides: Sequence[str] = (),
) -> AddTaskResult:
    """Add the config's new task(s) to the run in ``run_dir``, writing a new run folder.

    The config is the run's, changed by the file at ``config_path`` and ``overrides`` so that its
    data holds the new task: another benchmark (``data.benchmark: mnist+fashion``,
    ``tasks.include: [fashion]``), a table, or the run's own data with a task the run left out
    (``tasks.include``). Every task of that data is trained (an old task there trains on, with
    its head); the trunk learns unless ``finetune.freeze`` freezes its stages. The new run's
    network has the old heads and the new ones, so ``mtlkit predict`` gives every task.

    Raises:
        LaunchError: started as several processes (torchrun).
        ConfigError: no task of the data is new, another input shape, a change of the
            network, an unknown layer group.
        CheckpointError: the run has no readable selected weights.
    """
    refuse_several_processes("mtlkit add-task")
    derived = derive_from_run(run_dir, config_path, overrides)
    config, source = derived.config, derived.source
    data = load_data(config)
    old = {task.name: task for task in source.tasks}
    new = [spec.name for spec in data.tasks if spec.name not in old]
    if not new:
        raise ConfigError(
            f"tasks: every task of the data ({', '.join(s.name for s in data.tasks)}) is a task "
            "of the run already; choose data with a new task (data.benchmark, data.table, "
            "tasks.include)."
        )
    trained = build_tasks(config, data.tasks)
    kept = [task for name, task in old.items() if name not in {t.name for t in trained}]
    model = transferred_model(source, config, data.input_shape, kept + trained)
    old_tasks = list(old.values())
    old_test = eval_batches(source.config, load_data(source.config).test)
    before = _primary(
        evaluate(source.model, old_tasks, old_test, source.device, source.memory_format), old_tasks
    )
    outcome: dict[str, Any] = {}

    def transfer(trained_model: MultiTaskModel) -> dict[str, Any]:
        reports = evaluate(trained_model, old_tasks, old_test, source.device, source.memory_format)
        outcome["after"] = _primary(reports, old_tasks)
        outcome["bwt"] = backward_transfer(old_tasks, before, outcome["after"])
        return {
            "workflow": "add-task",
            "source": str(Path(run_dir).absolute()),
            "new_tasks": new,
            "old_tasks_metric": {t.name: t.primary_metric for t in old_tasks},
            "old_tasks_before": before,
            "old_tasks_after": outcome["after"],
            "bwt": outcome["bwt"],
        }

    saved_specs = [s for s in source.specs if s.name in {t.name for t in kept}] + data.tasks
    saved = SavedData(saved_specs, data.input_shape, data.preprocessing)
    run = fit_into_run_dir(config, out_dir, data, trained, model, derived.plan, saved, transfer)
    return AddTaskResult(run, new, before, outcome["after"], outcome["bwt"])


def _primary(reports: dict[str, Any], tasks: Sequence[Task]) -> dict[str, float]:
    """Each task's primary metric in ``reports``."""
    return {t.name: float(getattr(reports[t.name], t.primary_metric)) for t in tasks}
