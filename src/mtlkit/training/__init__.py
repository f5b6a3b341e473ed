"""Training: the loop, optimizers and schedules, checkpoints, logs and process-group awareness."""

from mtlkit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtlkit.training.optim import create_optimizer, create_scheduler
from mtlkit.training.task_cosine import CosineSample, TaskCosineRecorder
from mtlkit.training.trainer import (
    DivergedError,
    EpochRecord,
    FitResult,
    Trainer,
    evaluate,
    evaluate_with_losses,
)

__all__ = [
    "CheckpointError",
    "CosineSample",
    "DivergedError",
    "EpochRecord",
    "FitResult",
    "TaskCosineRecorder",
    "Trainer",
    "create_optimizer",
    "create_scheduler",
    "evaluate",
    "evaluate_with_losses",
    "load_checkpoint",
    "save_checkpoint",
]
