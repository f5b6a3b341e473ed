"""A finished run in Python: ``mtlkit.load(RUN_DIR)``, then ``.predict(table_or_tensor)``.

What ``mtlkit predict`` does, without files in between: the network with its selected weights,
its tasks and its fitted preprocessing, in one object for a notebook or a service.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from mtlkit.workflows.predict import PredictionInputs, predict_table
from mtlkit.workflows.restore import TrainedRun, restore_run

__all__ = ["LoadedRun", "load_run"]


class LoadedRun(TrainedRun):
    """A finished run ready to predict: its ``model`` (selected weights, eval mode), ``tasks``,
    ``preprocessing`` and ``config`` (see :class:`~mtlkit.workflows.TrainedRun`)."""

    def predict(
        self,
        inputs: PredictionInputs,
        *,
        views: int | None = None,
        combine: str | None = None,
        quiet: bool = False,
    ) -> pd.DataFrame:
        """Every task's prediction for ``inputs``: the table ``mtlkit predict`` writes.

        Args:
            inputs: a DataFrame or a table file (table runs; its feature columns are prepared
                with the run's fitted preprocessing and its other columns copied to the
                output), an image file (image runs), or the model's inputs as an ``(N,
                *input_shape)`` tensor or array (already prepared: no column is copied).
            views, combine: predict from this many noisy views, combined this way, instead of
                the run's ``eval.views`` and ``eval.combine``.
            quiet: print no notes (e.g. on categories unseen in training).

        Returns:
            One row per input row, in order: the copied columns, then ``<task>_pred`` and, for
            classifiers, ``<task>_prob`` (``<task>_prob_<label>`` for multilabel tasks).

        Raises:
            InputError: inputs that do not fit the run (missing or extra columns, values that
                are not numbers, another shape), or a column clashing with an output's name.
        """
        return predict_table(self, inputs, quiet=quiet, views=views, combine=combine)

    def __call__(self, inputs: Tensor) -> dict[str, Tensor]:
        """The heads' raw outputs for prepared ``inputs`` (no gradient): task name → tensor."""
        with torch.no_grad():
            return self.model(inputs.to(self.device))


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """The finished run in ``run_dir``, ready to :meth:`~LoadedRun.predict` on ``device``.

    Raises:
        ConfigError: not a run folder, or one without ``preprocessing.json``.
        CheckpointError: ``best.pt`` is missing or unreadable.
    """
    run = restore_run(run_dir, device)
    return LoadedRun(**{field.name: getattr(run, field.name) for field in fields(run)})
