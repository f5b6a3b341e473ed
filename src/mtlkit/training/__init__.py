"""Training: the loop, the training state (exact resume), processes training together
(torchrun/DDP), non-finite detection, stop signals, optimizers and schedules, checkpoints, logs."""

from mtlkit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtlkit.training.distributed import LaunchError, ProcessGroupReplicas, process_group
from mtlkit.training.finite import DivergedError
from mtlkit.training.optim import (
    ParamGroup,
    create_optimizer,
    create_scheduler,
    learning_rates,
)
from mtlkit.training.records import EpochRecord
from mtlkit.training.signals import StopSignals, TrainingInterrupted
from mtlkit.training.state import FitProgress, capture_rng, restore_rng, seed_process
from mtlkit.training.task_cosine import CosineSample, TaskCosineRecorder
from mtlkit.training.trainer import FitResult, Trainer, evaluate, evaluate_with_losses

__all__ = [
    "CheckpointError",
    "CosineSample",
    "DivergedError",
    "EpochRecord",
    "FitProgress",
    "FitResult",
    "LaunchError",
    "ParamGroup",
    "ProcessGroupReplicas",
    "StopSignals",
    "TaskCosineRecorder",
    "Trainer",
    "TrainingInterrupted",
    "capture_rng",
    "create_optimizer",
    "create_scheduler",
    "evaluate",
    "learning_rates",
    "evaluate_with_losses",
    "load_checkpoint",
    "process_group",
    "restore_rng",
    "save_checkpoint",
    "seed_process",
]
