"""A trained run brought back from its folder: config, tasks, preprocessing and selected weights,
without the training data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mtlkit.config import ExperimentConfig
from mtlkit.data import Preprocessing, TaskSpec
from mtlkit.models import MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.training import CheckpointError, load_checkpoint
from mtlkit.workflows.build import build_model, build_tasks, memory_format, resolve_device
from mtlkit.workflows.run_dir import RunDir, SavedData


@dataclass
class TrainedRun:
    """A finished run, ready to evaluate or predict.

    Attributes:
        folder: the run folder.
        config: its resolved configuration.
        specs: its tasks' specs, as trained.
        tasks: its tasks.
        preprocessing: how raw inputs become the model's inputs (fitted on its training split),
            if the run saved it.
        model: the selected weights (``best.pt``), in eval mode on ``device``.
        device: where the model lives.
        memory_format: the layout of image batches for the model.
        input_shape: the per-sample shape of the model's inputs.
    """

    folder: RunDir
    config: ExperimentConfig
    specs: list[TaskSpec]
    tasks: list[Task]
    preprocessing: Preprocessing | None
    model: MultiTaskModel
    device: torch.device
    memory_format: torch.memory_format
    input_shape: tuple[int, ...]


def restore_run(run_dir: str | Path, device: str = "auto") -> TrainedRun:
    """The run in ``run_dir`` with its selected weights loaded on ``device``.

    Raises:
        ConfigError: not a run folder, or one without ``preprocessing.json``.
        CheckpointError: ``best.pt`` is missing or unreadable.
    """
    folder = RunDir(Path(run_dir))
    config = folder.read_config()
    saved = folder.read_preprocessing()
    return load_weights(folder, config, saved, device)


def load_weights(
    folder: RunDir, config: ExperimentConfig, saved: SavedData, device: str = "auto"
) -> TrainedRun:
    """The run's model, rebuilt for the saved tasks and input shape, with the selected weights
    (``best.pt``) loaded on ``device``.

    Raises:
        CheckpointError: ``best.pt`` is missing, unreadable, or holds another network.
    """
    tasks = build_tasks(config, saved.specs)
    model = build_model(config, saved.input_shape, tasks)
    state = load_checkpoint(folder.best)["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(
            f"{folder.best} does not fit the network of {folder.config} "
            f"({str(error).splitlines()[0]}); retrain the run."
        ) from None
    target = resolve_device(device)
    layout = memory_format(config)
    model.to(target, memory_format=layout).eval()
    return TrainedRun(
        folder,
        config,
        saved.specs,
        tasks,
        saved.preprocessing,
        model,
        target,
        layout,
        tuple(saved.input_shape),
    )
