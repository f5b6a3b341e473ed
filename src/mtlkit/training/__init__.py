"""Training: the loop, optimizers and schedules, checkpoints, logs and process-group awareness."""

from mtlkit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtlkit.training.optim import create_optimizer, create_scheduler
from mtlkit.training.trainer import DivergedError, EpochRecord, FitResult, Trainer, evaluate

__all__ = [
    "CheckpointError",
    "DivergedError",
    "EpochRecord",
    "FitResult",
    "Trainer",
    "create_optimizer",
    "create_scheduler",
    "evaluate",
    "load_checkpoint",
    "save_checkpoint",
]
