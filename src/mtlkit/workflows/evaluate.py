"""Re-evaluate a finished run's selected weights: on its test split, or on a labelled table that
was not part of training (prepared with the run's saved preprocessing)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtlkit.data import InputError, TablePreprocessing, TensorBatches, read_table
from mtlkit.data.notes import note
from mtlkit.training import Views, evaluate
from mtlkit.workflows.build import build_views, eval_batches, load_data
from mtlkit.workflows.restore import TrainedRun, load_weights, restore_run, serve_preference
from mtlkit.workflows.run_dir import RunDir, SavedData


def evaluate_run(
    run_dir: str | Path,
    device: str = "auto",
    data: str | os.PathLike[str] | None = None,
    *,
    quiet: bool = False,
    views: int | None = None,
    combine: str | None = None,
    preference: str | Sequence[float] | None = None,
) -> dict[str, Any]:
    """Every task's metrics of the run's ``best.pt`` (over the run's ``eval.views`` noisy views
    of each input when it sets more than one).

    Args:
        run_dir: the run folder.
        device: where to evaluate.
        data: a labelled table (CSV, Parquet, ``.npz``) to evaluate on instead of the run's
            test split; the tasks whose label columns it holds are evaluated.
        quiet: print no notes.
        views, combine: evaluate over this many noisy views (of the run's noise), combined
            this way, instead of the run's ``eval.views`` and ``eval.combine``.
        preference: for a preference-conditioned run, the front's point to evaluate (K numbers
            ≥ 0 summing to 1, or ``"0.3,0.7"``; default: the uniform one).

    Raises:
        ConfigError: not a run folder, or a bad ``preference``.
        InputError: the data does not fit the run (columns, values, labels unknown to it), or
            the run's table changed since training.
    """
    if data is not None:
        run = restore_run(run_dir, device)
        serve_preference(run.model, preference)
        return _evaluate_table(run, data, quiet, build_views(run.config, views, combine))
    folder = RunDir(Path(run_dir))
    config = folder.read_config()
    loaded = load_data(config)
    now = SavedData(loaded.tasks, loaded.input_shape, loaded.preprocessing)
    saved = folder.read_preprocessing() if folder.preprocessing.is_file() else now
    # a run that gained tasks (mtlkit add-task) has heads for more tasks than its data
    names = [spec.name for spec in loaded.tasks]
    trained = SavedData(
        [spec for spec in saved.specs if spec.name in names], saved.input_shape, saved.preprocessing
    )
    if _plain(trained) != _plain(now):
        raise InputError(
            f"{loaded.name}: the data differs from the data {folder.path} was trained on (its "
            "fitted preprocessing changed); evaluate on a file with --data, or retrain."
        )
    run = load_weights(folder, config, saved, device)
    serve_preference(run.model, preference)
    tasks = [task for task in run.tasks if task.name in names]
    return evaluate(
        run.model,
        tasks,
        eval_batches(config, loaded.test),
        run.device,
        run.memory_format,
        build_views(config, views, combine),
    )


def _plain(saved: SavedData) -> tuple:
    """``saved`` as plain values, to compare (runs from before it was saved have none)."""
    inputs = None if saved.preprocessing is None else saved.preprocessing.to_dict()
    return [spec.to_dict() for spec in saved.specs], tuple(saved.input_shape), inputs


def _evaluate_table(
    run: TrainedRun, path: str | os.PathLike[str], quiet: bool, views: Views | None
) -> dict[str, Any]:
    preprocessing = run.preprocessing
    if not isinstance(preprocessing, TablePreprocessing):
        raise InputError(
            f"--data {path}: {run.folder.path} was not trained on a table; --data evaluates runs "
            "trained on tables (for its test split, leave --data out)."
        )
    frame, origin = read_table(path)
    preprocessing.check_columns(frame, origin)
    present, absent = [], []
    for task in run.tasks:
        columns = preprocessing.targets[task.name].label_columns
        (present if all(c in frame.columns for c in columns) else absent).append(task)
    if not present:
        wanted = ", ".join(
            f"{t.name} ({', '.join(preprocessing.targets[t.name].label_columns)})"
            for t in run.tasks
        )
        raise InputError(
            f"{origin.name}: no task's label column is in the table; the run's tasks: {wanted}."
        )
    if absent:
        note(
            f"{origin.name}: no labels for task(s) {', '.join(t.name for t in absent)}; "
            "evaluating the others.",
            quiet=quiet,
        )
    names = [task.name for task in present]
    split = preprocessing.split(frame, origin, f"the rows of {origin.name}", names, quiet=quiet)
    batches = TensorBatches(split, run.config.train.eval_batch_size)
    return evaluate(run.model, present, batches, run.device, run.memory_format, views)
