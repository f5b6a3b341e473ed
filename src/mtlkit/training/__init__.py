"""Training: the loop, optimizers and schedules, checkpoints, logs and process-group awareness."""

from mtlkit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtlkit.training.optim import (
    ParamGroup,
    create_optimizer,
    create_scheduler,
    learning_rates,
)
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
    "ParamGroup",
    "TaskCosineRecorder",
    "Trainer",
    "create_optimizer",
    "create_scheduler",
    "evaluate",
    "learning_rates",
    "evaluate_with_losses",
    "load_checkpoint",
    "save_checkpoint",
]
