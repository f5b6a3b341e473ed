"""The run folder: what a run writes where, and how a folder is made ready for a new run.

A run folder holds ``config.yaml`` (the resolved configuration), ``preprocessing.json`` (the
tasks' specs and how raw inputs become tensors, fitted on the training split), ``log.csv`` and
``tb/`` (the epoch history), ``last.pt`` (the whole training state at the latest checkpoint: every
``train.checkpoint_every`` steps and at every epoch end), ``previous.pt`` (the checkpoint before
it, kept until ``last.pt`` is complete; removed when the run finishes), ``best.pt`` (the selected
weights), ``metrics.json`` (final per-task test metrics and the history; its presence marks the
run as finished) and ``report.md`` with ``report.html`` (the same report with its figures,
self-contained). A comparison folder (``mtlkit baselines``) holds ``config.yaml`` (its
configuration), ``comparison.json`` and the reports beside one run folder per run
(``multi-task``, ``single-<task>``).
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from mtlkit.atomic import atomic_output, replace_durably, write_csv_atomic, write_text_atomic
from mtlkit.config import ConfigError, ExperimentConfig, load_config
from mtlkit.data import MultiTaskData, Preprocessing, TaskSpec, preprocessing_from_dict
from mtlkit.evaluation.document import Document, write_reports
from mtlkit.training import CheckpointError, load_checkpoint
from mtlkit.version import __version__

RUN_FILES = (
    "config.yaml",
    "preprocessing.json",
    "log.csv",
    "best.pt",
    "last.pt",
    "previous.pt",
    "metrics.json",
    "report.md",
    "report.html",
    "model.safetensors",
    "model.json",
    "model.onnx",
    "model.onnx.json",
    "transfer.json",
)
"""The files of a run folder (besides the ``tb/`` folder); ``transfer.json`` only in a run that
started from another (``mtlkit finetune``, ``mtlkit add-task``)."""
COMPARISON_FILES = ("config.yaml", "comparison.json", "report.md", "report.html")
"""The files of a comparison folder (besides its runs' folders)."""
PREPROCESSING_FORMAT = 1
"""The version of ``preprocessing.json``'s layout."""


@dataclass(frozen=True)
class RunDir:
    """The paths of one run folder, and the writers of its small files."""

    path: Path

    @property
    def config(self) -> Path:
        """The resolved configuration."""
        return self.path / "config.yaml"

    @property
    def preprocessing(self) -> Path:
        """The tasks' specs and the fitted input preprocessing (JSON, never pickled)."""
        return self.path / "preprocessing.json"

    @property
    def log(self) -> Path:
        """One CSV row per epoch (TensorBoard events go to :attr:`tensorboard`)."""
        return self.path / "log.csv"

    @property
    def tensorboard(self) -> Path:
        """The TensorBoard event folder."""
        return self.path / "tb"

    @property
    def best(self) -> Path:
        """The selected weights."""
        return self.path / "best.pt"

    @property
    def last(self) -> Path:
        """The whole training state at the latest checkpoint."""
        return self.path / "last.pt"

    @property
    def previous(self) -> Path:
        """The checkpoint before :attr:`last`, kept while a new one is written."""
        return self.path / "previous.pt"

    @property
    def metrics(self) -> Path:
        """The final test metrics; its presence marks the run as finished."""
        return self.path / "metrics.json"

    @property
    def report(self) -> Path:
        """The markdown report."""
        return self.path / "report.md"

    @property
    def transfer(self) -> Path:
        """Where a run that started from another says which, and what the transfer did."""
        return self.path / "transfer.json"

    def write_config(self, config: ExperimentConfig) -> None:
        """Write the resolved configuration (every default included)."""
        write_text_atomic(self.config, yaml.safe_dump(config.to_dict(), sort_keys=False))

    def forget_unstarted(self) -> None:
        """Remove the ``config.yaml`` of a run refused before its first checkpoint (nothing to
        resume); a run with a checkpoint keeps it."""
        if not self.last.exists() and not self.previous.exists():
            self.config.unlink(missing_ok=True)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Write ``metrics.json``."""
        write_text_atomic(self.metrics, json.dumps(metrics, indent=2))

    def read_config(self) -> ExperimentConfig:
        """The run's resolved configuration.

        Raises:
            ConfigError: the folder holds no run.
        """
        if not self.config.is_file():
            raise ConfigError(f"{self.path} is not a run folder: it has no config.yaml.")
        return load_config(self.config, saved=True)

    def write_preprocessing(self, data: MultiTaskData) -> None:
        """Write the data's task specs, input shape and fitted preprocessing, so that new inputs
        can be prepared and the model rebuilt without the training data."""
        self.write_saved(SavedData(data.tasks, data.input_shape, data.preprocessing))

    def write_saved(self, saved: SavedData) -> None:
        """Write ``preprocessing.json`` from what a run keeps of its data (a model with heads for
        more tasks than its data has, after ``mtlkit add-task``, lists them all)."""
        record = {
            "format": PREPROCESSING_FORMAT,
            "tasks": [spec.to_dict() for spec in saved.specs],
            "input_shape": list(saved.input_shape),
            "inputs": None if saved.preprocessing is None else saved.preprocessing.to_dict(),
        }
        write_text_atomic(self.preprocessing, json.dumps(record, indent=1))

    def read_preprocessing(self) -> SavedData:
        """What :meth:`write_preprocessing` saved.

        Raises:
            ConfigError: the run has no (readable) ``preprocessing.json``.
        """
        try:
            record = json.loads(self.preprocessing.read_text())
            inputs = record["inputs"]
            return SavedData(
                [TaskSpec.from_dict(spec) for spec in record["tasks"]],
                tuple(record["input_shape"]),
                None if inputs is None else preprocessing_from_dict(inputs),
            )
        except FileNotFoundError:
            raise ConfigError(
                f"{self.path} has no preprocessing.json (trained before it was saved, or not a "
                "run folder); train the run again."
            ) from None
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"{self.preprocessing} is not readable ({type(error).__name__}: {error}); "
                "train the run again."
            ) from None

    def save_state(self, state: dict[str, Any]) -> None:
        """Write a checkpoint as :attr:`last`, keeping a good one at every instant.

        The new file is written and synced under a temporary name first; only then does the old
        :attr:`last` become :attr:`previous` and the new one :attr:`last` (two renames). A crash
        at any point leaves a complete :attr:`last`, or a complete :attr:`previous` (between the
        renames); a full disk leaves both as they were.
        """
        with atomic_output(self._next) as temporary:
            torch.save(state, temporary)
        if self.last.exists():
            replace_durably(self.last, self.previous)
        replace_durably(self._next, self.last)

    def load_state(self) -> tuple[dict[str, Any], Path] | None:
        """The newest readable checkpoint and its path: :attr:`last`, else :attr:`previous`.

        ``None`` when there is neither (the run stopped before its first checkpoint).

        Raises:
            CheckpointError: a checkpoint exists but none is readable; nothing is changed.
        """
        errors = []
        for path in (self.last, self.previous):
            if not path.exists():
                continue
            try:
                return load_checkpoint(path), path
            except CheckpointError as error:
                errors.append(str(error))
        if errors:
            raise CheckpointError(" and ".join(errors))
        return None

    @property
    def _next(self) -> Path:
        """A complete checkpoint on its way to :attr:`last`."""
        return self.path / ".next.pt"

    def remove_temporaries(self) -> None:
        """Remove what a killed run may have left half-way (ours only): temporary files, and a
        checkpoint that was complete but not yet renamed to :attr:`last` (a resume replays from
        :attr:`last` to the same state)."""
        self._next.unlink(missing_ok=True)
        for path in self.path.glob(".*.tmp"):
            if _TEMPORARY.fullmatch(path.name):
                path.unlink(missing_ok=True)

    def check_writable(self) -> None:
        """Create the folder and a probe file in it, then remove the probe.

        Raises:
            OSError: naming the folder, when it cannot be written (read-only, full, a file in
                the way); before any data is read or any training is done.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-probe-{secrets.token_hex(4)}"
            with probe.open("wb") as file:
                file.write(b"0" * 4096)
                file.flush()
                os.fsync(file.fileno())
            probe.unlink()
        except OSError as error:
            raise OSError(
                error.errno,
                f"cannot write the run folder {self.path} ({error.strerror or error}); choose "
                "another --out, or free space",
            ) from None


@dataclass(frozen=True)
class SavedData:
    """What a run keeps of its data (``preprocessing.json``).

    Attributes:
        specs: the tasks' specs (type, class names, loss, a regression target's scale).
        input_shape: the per-sample shape of the model's inputs.
        preprocessing: how raw inputs become them, fitted on the training split; ``None`` when
            the data came without one (a benchmark registered without it).
    """

    specs: list[TaskSpec]
    input_shape: tuple[int, ...]
    preprocessing: Preprocessing | None


def write_results(
    folder: Path,
    stem: str,
    table: tuple[Sequence[object], Sequence[Sequence[object]]],
    summary: dict[str, Any],
    document: Document,
) -> None:
    """Write what a compare, pareto or affinity folder holds besides its runs: ``<stem>.csv``
    (``table``: a header and rows), ``<stem>.json`` (``summary``) and the report
    (``report.md``, ``report.html``), each atomically."""
    header, rows = table
    write_csv_atomic(folder / f"{stem}.csv", header, rows)
    write_text_atomic(folder / f"{stem}.json", json.dumps(summary, indent=2, default=str))
    write_reports(folder, document)


_TEMPORARY = re.compile(r"\.[\w.-]+\.[0-9a-f]{12}\.tmp")
"""The name :func:`mtlkit.atomic.atomic_output` gives its temporary files."""


def prepare_run_dir(path: str | Path, *, overwrite: bool) -> Path:
    """Make ``path`` ready for a new run or comparison, never losing a finished one by accident.

    A folder holding a finished run (``metrics.json``) or comparison (``comparison.json``) is
    refused unless ``overwrite``; with ``overwrite``, the files mtlkit wrote there before (and
    only those, in sub-runs too) are removed first, so nothing stale mixes with the new run.

    Raises:
        FileExistsError: the folder holds a finished run and ``overwrite`` is false.
    """
    path = Path(path)
    finished = [name for name in ("metrics.json", "comparison.json") if (path / name).exists()]
    if finished and not overwrite:
        raise FileExistsError(
            f"{path} already holds a finished run ({finished[0]}); pass --overwrite to replace "
            "it, or choose another --out."
        )
    if overwrite and path.is_dir():
        _remove_run_files(path)
    return path


def prepare_resume(path: str | Path) -> Path:
    """Check that ``path`` holds a run or comparison that can be resumed: it has a
    ``config.yaml`` and has not finished.

    Raises:
        ConfigError: the folder holds no config.yaml (it is no run folder).
        FileExistsError: the run or comparison has finished; there is nothing to resume.
    """
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"--resume {path}: not a run folder (it has no config.yaml).")
    finished = [name for name in ("metrics.json", "comparison.json") if (path / name).exists()]
    if finished:
        raise FileExistsError(
            f"{path} has finished ({finished[0]}); there is nothing to resume. Start a new run "
            "with another --out, or pass --overwrite to replace it."
        )
    return path


def _remove_run_files(path: Path) -> None:
    for name in (*RUN_FILES, *COMPARISON_FILES):
        (path / name).unlink(missing_ok=True)
    shutil.rmtree(path / "tb", ignore_errors=True)
    for sub in [path / "multi-task", *path.glob("single-*")]:
        if (sub / "config.yaml").is_file():
            _remove_run_files(sub)


def run_info(
    config: ExperimentConfig,
    best_epoch: int,
    seconds: float,
    device: torch.device,
    data: MultiTaskData,
) -> dict[str, object]:
    """The facts a run's report lists: what ran, where, with which versions."""
    return {
        "config": config.name,
        "data": f"{data.name} ({data.protocol})",
        "method": config.balancer.name,
        "backbone": config.model.backbone,
        "seed": config.seed,
        "epochs": config.train.epochs,
        "best epoch (validation)": best_epoch,
        "wall time (s)": round(seconds, 1),
        "device": str(device),
        "mtlkit": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data fingerprint": data.fingerprint[:16],
    }
