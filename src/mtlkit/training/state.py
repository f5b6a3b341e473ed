"""The whole training state, for a resume that continues bit for bit where a run stopped.

:class:`FitProgress` is where the loop is (epoch, batch within it, step count), what it has
summed so far in the epoch, the best-so-far selection (score, epoch, weights), the history and
the count of skipped steps; :meth:`FitProgress.state_dict` writes it as tensors and plain values
(loadable with ``weights_only=True``) and :meth:`Trainer.state_dict
<mtlkit.training.Trainer.state_dict>` puts it beside the model, optimizer, scheduler and balancer
states. The random number
generators (torch's CPU and CUDA ones, numpy's, Python's) are per process:
:func:`capture_rng` / :func:`restore_rng` read and set this process's, and a data-parallel run
keeps one entry per rank.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlkit.measure.records import CosineSample, EpochRecord

__all__ = ["FitProgress", "FitResult", "capture_rng", "restore_rng", "seed_process"]


@dataclass
class FitProgress:
    """Where :meth:`Trainer.fit <mtlkit.training.Trainer.fit>` is, and what it has gathered.

    Attributes:
        epoch: the epoch in progress (1-based); after the last one, ``epochs + 1``.
        step: the batches of ``epoch`` already trained (the data order is a function of the seed
            and the epoch, so a resume skips these).
        global_step: the batches trained since the start of the run.
        loss_sum: the (K,) sum of the step losses of ``epoch`` so far (replica means).
        weight_sum: the (K,) sum of the applied task weights, or ``None``.
        counted: the steps of ``epoch`` in those sums (skipped steps are not).
        unlabelled: the (K,) count of those steps where a task had no labelled row, or ``None``.
        skipped: the steps skipped for non-finite values since the start of the run.
        epoch_seconds: the seconds spent in ``epoch`` before this process took over.
        best_score: the best validation score so far (``-inf``: none yet).
        best_epoch: the epoch that scored it (0: none).
        best_model: the model's weights at that epoch.
        history: the records of the finished epochs.
    """

    epoch: int = 1
    step: int = 0
    global_step: int = 0
    loss_sum: Tensor | None = None
    weight_sum: Tensor | None = None
    counted: int = 0
    unlabelled: Tensor | None = None
    skipped: int = 0
    epoch_seconds: float = 0.0
    best_score: float = -math.inf
    best_epoch: int = 0
    best_model: dict[str, Tensor] | None = None
    history: list[EpochRecord] = field(default_factory=list)

    def start_epoch(self, epoch: int) -> None:
        """Move to the start of ``epoch``: nothing trained or summed in it yet."""
        self.epoch, self.step, self.counted, self.epoch_seconds = epoch, 0, 0, 0.0
        self.loss_sum = self.weight_sum = self.unlabelled = None

    def state_dict(self) -> dict[str, Any]:
        """Every field as tensors and plain values (the history as dicts)."""
        state = {key: value for key, value in vars(self).items() if key != "history"}
        state["history"] = [asdict(record) for record in self.history]
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device) -> FitProgress:
        """The progress :meth:`state_dict` wrote, its sums on ``device``."""
        fields = dict(state)
        fields["history"] = [EpochRecord(**record) for record in fields["history"]]
        for key in ("loss_sum", "weight_sum", "unlabelled"):
            if fields[key] is not None:
                fields[key] = fields[key].to(device)
        return cls(**fields)

    @property
    def label(self) -> str:
        """``epoch E, batch B`` (B: the batches of the epoch done), for messages."""
        return f"epoch {self.epoch}, batch {self.step}"


def seed_process(seed: int) -> None:
    """Seed this process's global generators (torch, numpy, Python) from ``seed``, so that
    anything drawing from them (dropout, a user's augmentation) starts from a known state."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture_rng() -> dict[str, Any]:
    """This process's random number generator states: torch (CPU, every CUDA device), numpy's
    global generator and Python's ``random``, as tensors and plain values."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Set this process's generators to a :func:`capture_rng` state."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["gauss"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


@dataclass
class FitResult:
    """The epoch history, the epoch whose weights were kept (best on validation, or last), and
    the steps skipped for non-finite values.

    ``best_score`` is that epoch's validation score
    (:meth:`~mtlkit.training.Trainer.selection_score`; None without validation),
    ``task_cosines`` the recorded gradient cosines (empty unless asked for).
    """

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    skipped: int = 0
    best_score: float | None = None
    task_cosines: list[CosineSample] = field(default_factory=list)

    @property
    def step_seconds(self) -> float:
        """The median over epochs of the seconds per training step."""
        return statistics.median(
            record.step_seconds for record in self.history if record.step_seconds is not None
        )
