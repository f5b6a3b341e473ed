"""Re-evaluate a finished run's selected weights on its test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtlkit.config import ConfigError, load_config
from mtlkit.training import evaluate, load_checkpoint
from mtlkit.workflows.build import (
    batches,
    build_model,
    build_tasks,
    load_data,
    memory_format,
    resolve_device,
)
from mtlkit.workflows.run_dir import RunDir


def evaluate_run(run_dir: str | Path, device: str = "auto") -> dict[str, Any]:
    """Every task's test metrics of the run's ``best.pt``, rebuilt from its ``config.yaml``."""
    folder = RunDir(Path(run_dir))
    if not folder.config.is_file():
        raise ConfigError(f"{folder.path} is not a run folder: it has no config.yaml.")
    config = load_config(folder.config)
    state = load_checkpoint(folder.best)
    data = load_data(config)
    tasks = build_tasks(config, data)
    model = build_model(config, data, tasks)
    model.load_state_dict(state["model"])
    target = resolve_device(device)
    layout = memory_format(config)
    model.to(target, memory_format=layout)
    test = batches(data.test, config.train.eval_batch_size, shuffle=False, seed=0)
    return evaluate(model, tasks, test, target, layout)
