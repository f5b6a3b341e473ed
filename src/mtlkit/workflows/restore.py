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
from mtlkit.training import load_checkpoint
from mtlkit.workflows.build import build_model, build_tasks, memory_format, resolve_device
from mtlkit.workflows.run_dir import RunDir


@dataclass
class TrainedRun:
    """A finished run, ready to evaluate or predict.

    Attributes:
        folder: the run folder.
        config: its resolved configuration.
        specs: its tasks' specs, as trained.
        tasks: its tasks.
        preprocessing: how raw inputs become the model's inputs (fitted on its training split).
        model: the selected weights (``best.pt``), in eval mode on ``device``.
        device: where the model lives.
        memory_format: the layout of image batches for the model.
    """

    folder: RunDir
    config: ExperimentConfig
    specs: list[TaskSpec]
    tasks: list[Task]
    preprocessing: Preprocessing
    model: MultiTaskModel
    device: torch.device
    memory_format: torch.memory_format


def restore_run(run_dir: str | Path, device: str = "auto") -> TrainedRun:
    """The run in ``run_dir`` with its selected weights loaded on ``device``.

    Raises:
        ConfigError: not a run folder, or one without ``preprocessing.json``.
        CheckpointError: ``best.pt`` is missing or unreadable.
    """
    folder = RunDir(Path(run_dir))
    config = folder.read_config()
    specs, preprocessing = folder.read_preprocessing()
    tasks = build_tasks(config, specs)
    model = build_model(config, preprocessing.input_shape, tasks)
    model.load_state_dict(load_checkpoint(folder.best)["model"])
    target = resolve_device(device)
    layout = memory_format(config)
    model.to(target, memory_format=layout).eval()
    return TrainedRun(folder, config, specs, tasks, preprocessing, model, target, layout)
