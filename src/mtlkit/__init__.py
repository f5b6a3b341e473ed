"""mtlkit: multi-task learning on PyTorch.

One network learns several tasks at once: a shared trunk with task heads, per-task losses balanced
by a weighting or gradient-aggregation method, every task evaluated on its own.

``mtlkit.load(RUN_DIR)`` brings a finished run back for prediction in Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mtlkit.version import __version__

if TYPE_CHECKING:
    from mtlkit.workflows.load import LoadedRun

__all__ = ["__version__", "load"]


def load(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """The finished run in ``run_dir``: its network with the selected weights, its tasks and its
    fitted preprocessing, ready for ``.predict(table_or_tensor)`` (the table ``mtlkit predict``
    writes). Imports no optional extra (ONNX, Lightning).

    Raises:
        ConfigError: not a run folder, or one without ``preprocessing.json``.
        CheckpointError: ``best.pt`` is missing or unreadable (the run has not finished).
    """
    from mtlkit.workflows.load import load_run  # the package itself stays light to import

    return load_run(run_dir, device)
