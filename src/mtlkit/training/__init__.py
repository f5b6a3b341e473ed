"""Training: the loop, optimizers and schedules, checkpoints, logs and process-group awareness."""

from mtlkit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtlkit.training.optim import (
    ParamGroup,
    create_optimizer,
    create_scheduler,
    learning_rates,
)
from mtlkit.training.trainer import DivergedError, EpochRecord, FitResult, Trainer, evaluate

__all__ = [
    "CheckpointError",
    "DivergedError",
    "EpochRecord",
    "FitResult",
    "ParamGroup",
    "Trainer",
    "create_optimizer",
    "create_scheduler",
    "evaluate",
    "learning_rates",
    "load_checkpoint",
    "save_checkpoint",
]
