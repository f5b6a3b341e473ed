"""Apply a trained run to new rows (or images): every task's prediction, as a table.

The inputs are prepared with the preprocessing the run saved (fitted on its training split), so
a new table needs the training table's feature columns and may hold its other columns (an
identifier, the labels), which are copied to the output; a column the training table did not
have is an error. Each task adds ``<task>_pred`` (a class name, the labels that apply, or a
value) and, for classifiers, ``<task>_prob`` (the predicted class's probability; for a binary
task the positive label's) or ``<task>_prob_<label>`` (multilabel). A per-pixel task writes its
maps beside the table, as ``.npy`` (all of them) and one PNG per input, and its column
``<task>_map`` names each row's PNG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from mtlkit.data import ImageInputs, InputError, TablePreprocessing, read_table
from mtlkit.data.tables import write_table
from mtlkit.evaluation.maps import map_kind, write_map_pngs
from mtlkit.workflows.build import build_views
from mtlkit.workflows.restore import TrainedRun, restore_run

PredictionInputs = str | os.PathLike[str] | pd.DataFrame | torch.Tensor | np.ndarray
"""What :func:`predict_table` reads: a file, a DataFrame, or the model's inputs."""


@dataclass
class Predictions:
    """What :func:`predict` wrote: the table and where."""

    table: pd.DataFrame
    path: Path


def predict(
    run_dir: str | Path,
    inputs: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    device: str = "auto",
    quiet: bool = False,
    views: int | None = None,
    combine: str | None = None,
) -> Predictions:
    """Predict every task of the run in ``run_dir`` for the rows (or images) in ``inputs``
    (combined over the run's ``eval.views`` noisy views of each input when it sets more than
    one).

    Args:
        run_dir: a finished run folder.
        inputs: a table (``.csv``, ``.parquet``, ``.npz``) for runs trained on tables; an image
            file (``.npy``, ``.npz``, IDX) for runs trained on images.
        out: the ``.csv`` or ``.parquet`` file to write; default
            ``<run_dir>/predictions-<inputs' name>.csv``.
        device: where to run the model.
        quiet: print no notes (e.g. on categories unseen in training).
        views, combine: predict from this many noisy views (of the run's noise), combined this
            way, instead of the run's ``eval.views`` and ``eval.combine``.

    Returns:
        The prediction table (one row per input row, in order) and the path written.

    Raises:
        ConfigError: not a run folder.
        InputError: inputs that do not fit the run (missing or extra columns, values that are
            not numbers, images of another shape), or an output name clashing with a column.
    """
    run = restore_run(run_dir, device)
    path = (
        Path(out) if out is not None else run.folder.path / f"predictions-{Path(inputs).stem}.csv"
    )
    table = predict_table(run, inputs, quiet=quiet, views=views, combine=combine, maps_beside=path)
    return Predictions(table, write_table(table, path))


def predict_table(
    run: TrainedRun,
    inputs: PredictionInputs,
    *,
    quiet: bool = False,
    views: int | None = None,
    combine: str | None = None,
    maps_beside: Path | None = None,
) -> pd.DataFrame:
    """Every task's prediction of ``run`` for ``inputs``, as :func:`predict` writes it.

    Args:
        run: a restored run.
        inputs: a file (as :func:`predict` reads), a DataFrame (table runs), or the model's
            inputs as a tensor or array of shape ``(N, *input_shape)`` (already prepared; for
            image runs, the images scaled to [0, 1]).
        quiet, views, combine: as :func:`predict`.
        maps_beside: the table file beside which a per-pixel task's maps are written (its
            ``<task>_map`` column names them); ``None``: its ``<task>_pred`` column holds each
            row's map as an array.

    Raises:
        InputError: as :func:`predict`.
    """
    kept, features = _read_inputs(run, inputs, quiet)
    columns: dict[str, list[Any]] = {}
    maps: dict[str, list[Any]] = {}
    chosen = build_views(run.config, views, combine)
    generator = None if chosen is None else chosen.generator(run.device)
    with torch.no_grad():
        for start in range(0, len(features), run.config.train.eval_batch_size):
            chunk = features[start : start + run.config.train.eval_batch_size]
            chunk = chunk.to(run.device)
            if chunk.dim() == 4:
                chunk = chunk.contiguous(memory_format=run.memory_format)
            if chosen is None:
                outputs = run.model(chunk)
            else:
                outputs = chosen.outputs(run.model, chunk, run.tasks, generator)
            for task in run.tasks:
                for key, values in task.predict(outputs[task.name]).items():
                    target = maps if task.per_pixel else columns
                    target.setdefault(f"{task.name}_{key}", []).extend(values)
    columns |= maps if maps_beside is None else _write_maps(run, maps, maps_beside)
    clash = [name for name in columns if name in kept.columns]
    if clash:
        raise InputError(
            f"{_name(inputs)}: column(s) {', '.join(map(repr, clash))} would be overwritten by "
            "the predictions; rename them."
        )
    return pd.concat([kept.reset_index(drop=True), pd.DataFrame(columns)], axis=1)


def _write_maps(run: TrainedRun, maps: dict[str, list[Any]], path: Path) -> dict[str, list[str]]:
    """Write each per-pixel task's maps beside the table ``path``: all of them stacked in
    ``<stem>-<task>.npy`` and one picture per input in ``<stem>-<task>/<i>.png``; returns the
    table's ``<task>_map`` columns (each row's picture, relative to the table's folder)."""
    columns = {}
    for task in run.tasks:
        values = maps.get(f"{task.name}_pred")
        kind = map_kind(task)
        if values is None or kind is None:
            continue
        stacked = np.stack(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.with_name(f"{path.stem}-{task.name}.npy"), stacked)
        pictures = write_map_pngs(path.with_name(f"{path.stem}-{task.name}"), kind, stacked)
        columns[f"{task.name}_map"] = [str(p.relative_to(path.parent)) for p in pictures]
    return columns


def _read_inputs(
    run: TrainedRun, inputs: PredictionInputs, quiet: bool
) -> tuple[pd.DataFrame, torch.Tensor]:
    """The input columns to copy to the output, and the model's inputs."""
    if isinstance(inputs, torch.Tensor | np.ndarray):
        features = torch.as_tensor(inputs, dtype=torch.float32)
        shape = tuple(run.input_shape)
        if features.dim() != len(shape) + 1 or tuple(features.shape[1:]) != shape:
            raise InputError(
                f"the model's inputs have shape (N, {', '.join(map(str, shape))}); got "
                f"{tuple(features.shape)}. Pass the table (or image file) to prepare them."
            )
        return pd.DataFrame(index=range(len(features))), features
    preprocessing = run.preprocessing
    if preprocessing is None:
        raise InputError(
            f"{run.folder.path}: its data came without a preprocessing to save, so new inputs "
            "cannot be prepared as in training."
        )
    if isinstance(preprocessing, TablePreprocessing):
        frame, origin = read_table(inputs)
        preprocessing.check_columns(frame, origin)
        features = preprocessing.inputs(frame, origin, quiet=quiet)
        kept = [c for c in frame.columns if c not in preprocessing.features.columns]
        return frame[kept], features
    if isinstance(inputs, pd.DataFrame):
        raise InputError(
            f"{run.folder.path} was trained on images; give an image file or an (N, "
            f"{', '.join(map(str, run.input_shape))}) array, not a table."
        )
    images = cast(ImageInputs, preprocessing).read(inputs)
    return pd.DataFrame(index=range(len(images))), images


def _name(inputs: PredictionInputs) -> str:
    """How messages name ``inputs``."""
    return str(inputs) if isinstance(inputs, str | os.PathLike) else "the inputs"
