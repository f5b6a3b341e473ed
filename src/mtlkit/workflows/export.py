"""Export a run's selected weights as safetensors, for sharing a model without pickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch

from mtlkit.atomic import atomic_output, write_text_atomic
from mtlkit.config import ExperimentConfig
from mtlkit.training import load_checkpoint
from mtlkit.version import __version__
from mtlkit.workflows.run_dir import RunDir


def export_run(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``best.pt``'s weights as a safetensors file and a JSON description beside it.

    The safetensors file holds only tensors (no code can run when it is read); the JSON file
    (same name, ``.json``) holds the resolved config, the tasks, the selected epoch and the
    mtlkit version. Both are written atomically. Default: ``<run>/model.safetensors``. For one
    ONNX graph instead, see :func:`mtlkit.workflows.export_onnx`.

    Returns:
        The paths of the weights and of the description.

    Raises:
        ConfigError: the folder is no run folder.
        CheckpointError: ``best.pt`` is missing or unreadable (the run has not finished).
    """
    folder = RunDir(Path(run_dir))
    config = folder.read_config()
    state = load_checkpoint(folder.best)
    weights = Path(out) if out is not None else folder.path / "model.safetensors"
    description = weights.with_suffix(".json")
    tensors = {name: tensor.contiguous() for name, tensor in state["model"].items()}
    with atomic_output(weights) as temporary:
        safetensors.torch.save_file(
            tensors, str(temporary), metadata={"format": "pt", "mtlkit": __version__}
        )
    summary = {"weights": weights.name, **describe_run(config, state.get("epoch"))}
    write_text_atomic(description, json.dumps(summary, indent=2))
    return weights, description


def describe_run(config: ExperimentConfig, best_epoch: int | None) -> dict[str, Any]:
    """What an exported file's JSON description says of its run: the tasks, the selected epoch,
    the mtlkit version and the resolved config."""
    return {
        "tasks": config.task_names,
        "best_epoch": best_epoch,
        "mtlkit": __version__,
        "config": config.to_dict(),
    }
