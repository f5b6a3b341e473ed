"""Grid cells: ordinary run folders named by a fingerprint of their configuration.

The grid workflows (``compare``, ``pareto``) train many configurations under one folder. Each is
a plain run folder (``config.yaml``, ``metrics.json``, reports, …) in ``<grid>/cells/``, named
``<label>-<fingerprint>``, where the fingerprint hashes the resolved configuration without the
keys that cannot change the result (``name``, ``train.progress``). So:

* a cell is finished when its ``metrics.json`` exists, and a finished cell is never trained
  again: an interrupted grid resumes by running the same command;
* a cell is found by its fingerprint alone, whatever its label: the single-task baselines that
  several methods (or a compare and a Pareto sweep in one folder) need are trained once;
* a cell whose training was interrupted (no ``metrics.json``) continues from its run folder's
  last checkpoint (from scratch if it wrote none): a killed worker's cell is not started over;
* a cell whose training diverged (a non-finite loss) is finished too: ``diverged.json`` holds
  the error, its validation score counts as −∞ (a grid never chooses it) and it is not trained
  again.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlkit.atomic import write_text_atomic
from mtlkit.config import ExperimentConfig
from mtlkit.training import DivergedError
from mtlkit.training.distributed import LaunchError, world_size
from mtlkit.training.hooks import Hook
from mtlkit.workflows.run_dir import RunDir, prepare_run_dir
from mtlkit.workflows.train import train

CELLS = "cells"
"""The sub-folder of a grid folder that holds its cells."""
DIVERGED = "diverged.json"
"""The file that marks a cell whose training diverged (instead of ``metrics.json``)."""
_FINGERPRINT_LENGTH = 16
_IGNORED = (("name",), ("train", "progress"))
"""Keys of the resolved configuration that cannot change a run's result."""


def config_fingerprint(config: ExperimentConfig) -> str:
    """A sha256 (hex) of the resolved configuration without the keys that cannot change the
    result (``name``, ``train.progress``)."""
    raw = config.to_dict()
    for path in _IGNORED:
        node = raw
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Cell:
    """A finished cell: its folder, configuration and the numbers the grid workflows read.

    Attributes:
        path: the run folder.
        config: its resolved configuration.
        metrics: its ``metrics.json``.
        trained: whether this call trained it (False: it was already finished).
    """

    path: Path
    config: ExperimentConfig
    metrics: dict[str, Any]
    trained: bool

    @property
    def diverged(self) -> str | None:
        """The error if the training diverged, else None."""
        return self.metrics.get("diverged")

    @property
    def tasks(self) -> list[str]:
        """The run's tasks, in order."""
        return list(self.metrics["test"])

    def primary(self, task: str) -> tuple[str, bool]:
        """The name of ``task``'s primary metric and whether higher is better."""
        entry = self.metrics["primary_metric"][task]
        return entry["name"], bool(entry["higher_is_better"])

    def test_metric(self, task: str) -> float:
        """``task``'s primary metric on the test split."""
        return float(self.metrics["test"][task][self.primary(task)[0]])

    def test_loss(self, task: str) -> float:
        """``task``'s mean loss on the test split (NaN if it had no labelled test row)."""
        value = self.metrics["test_loss"][task]
        return float("nan") if value is None else float(value)

    @property
    def val_score(self) -> float:
        """The validation score of the selected epoch (mean over tasks of the signed primary
        metric); what a grid chooses by — never a test number. −∞ if the training diverged."""
        if self.diverged is not None:
            return -math.inf
        score = self.metrics["best_val_score"]
        if score is None:
            raise ValueError(
                f"{self.path} has no validation score (data.val_fraction is 0): a grid chooses "
                "by validation; set data.val_fraction > 0."
            )
        return float(score)

    @property
    def step_seconds(self) -> float:
        """The run's median seconds per training step."""
        return float(self.metrics["step_seconds"])


def cell_path(root: str | Path, label: str, config: ExperimentConfig) -> Path:
    """Where the cell of ``config`` lives under the grid folder ``root``: the folder already
    holding its fingerprint if there is one, else ``<root>/cells/<label>-<fingerprint>`` (any
    character of ``label`` but letters, digits and ``._=-`` written as ``_``)."""
    suffix = config_fingerprint(config)[:_FINGERPRINT_LENGTH]
    existing = sorted((Path(root) / CELLS).glob(f"*-{suffix}"))
    finished = [path for path in existing if is_finished(path)]
    if finished or existing:
        return (finished or existing)[0]
    return Path(root) / CELLS / f"{re.sub(r'[^A-Za-z0-9._=-]+', '_', label)}-{suffix}"


def run_cell(
    root: str | Path, label: str, config: ExperimentConfig, hooks: Sequence[Hook] = ()
) -> Cell:
    """The finished cell of ``config`` under ``root``, trained now unless it already was (a
    training that diverges finishes the cell with ``diverged.json``; one that was interrupted
    after a checkpoint continues from it). ``hooks`` join the training loop (e.g. a pruner's
    report of each epoch's validation score); what they raise leaves the cell unfinished."""
    path = cell_path(root, label, config)
    folder = RunDir(path)
    trained = not is_finished(path)
    if trained:
        resume = folder.last.is_file() or folder.previous.is_file()
        try:
            train(
                config,
                path if resume else prepare_run_dir(path, overwrite=True),
                hooks=hooks,
                resume=resume,
            )
        except DivergedError as error:
            write_text_atomic(path / DIVERGED, json.dumps({"diverged": str(error)}))
    source = folder.metrics if folder.metrics.is_file() else path / DIVERGED
    return Cell(path=path, config=config, metrics=json.loads(source.read_text()), trained=trained)


def is_finished(path: Path) -> bool:
    """Whether the cell folder ``path`` holds a finished (or diverged) run."""
    return RunDir(path).metrics.is_file() or (path / DIVERGED).is_file()


def refuse_several_processes(workflow: str) -> None:
    """Stop a workflow of many small runs started as several processes (``torchrun``).

    Raises:
        LaunchError: naming ``workflow`` and what to run instead.
    """
    processes = world_size()
    if processes > 1:
        raise LaunchError(
            f"{workflow} trains its runs one after another in one process, but it was started "
            f"as {processes} processes; run it without torchrun (to train one configuration "
            "across processes, use `torchrun ... -m mtlkit train`)."
        )


def prepare_grid_dir(path: str | Path, outputs: tuple[str, ...], *, overwrite: bool) -> Path:
    """Make ``path`` ready for a grid workflow writing ``outputs`` (file names).

    A grid folder is resumed as it is; with ``overwrite`` its cells and ``outputs`` are removed
    first (only cell folders mtlkit wrote, those with a ``config.yaml``).

    Raises:
        FileExistsError: ``path`` holds a single run or a baselines comparison, not a grid.
        LaunchError: started as several processes (see :func:`refuse_several_processes`).
    """
    refuse_several_processes("a grid of runs (compare, pareto)")
    path = Path(path)
    for marker in ("metrics.json", "comparison.json"):
        if (path / marker).exists():
            raise FileExistsError(
                f"{path} holds a run or a baselines comparison ({marker}), not a grid; choose "
                "another --out."
            )
    if overwrite:
        for name in outputs:
            (path / name).unlink(missing_ok=True)
        cells = path / CELLS
        if cells.is_dir():
            for cell in cells.iterdir():
                if RunDir(cell).config.is_file():
                    shutil.rmtree(cell)
    return path
