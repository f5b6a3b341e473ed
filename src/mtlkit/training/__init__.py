"""Training: the loop, optimizers and schedules, checkpoints, logs and process-group awareness;
the practitioner's techniques (input noise, noisy views, distillation teachers, L1/L2 penalties,
temperature scaling)."""

from mtlkit.training.calibration import fit_temperatures
from mtlkit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtlkit.training.distill import EMATeacher, FrozenTeachers, Teacher
from mtlkit.training.noise import InputNoise, noise_generator
from mtlkit.training.optim import create_optimizer, create_scheduler
from mtlkit.training.penalties import GROUPS, ParameterPenalties, Penalty
from mtlkit.training.task_cosine import CosineSample, TaskCosineRecorder
from mtlkit.training.trainer import (
    DivergedError,
    EpochRecord,
    FitResult,
    Trainer,
    evaluate,
    evaluate_with_losses,
)
from mtlkit.training.views import Views

__all__ = [
    "GROUPS",
    "CheckpointError",
    "CosineSample",
    "DivergedError",
    "EMATeacher",
    "EpochRecord",
    "FitResult",
    "FrozenTeachers",
    "InputNoise",
    "ParameterPenalties",
    "Penalty",
    "TaskCosineRecorder",
    "Teacher",
    "Trainer",
    "Views",
    "create_optimizer",
    "create_scheduler",
    "evaluate",
    "evaluate_with_losses",
    "fit_temperatures",
    "load_checkpoint",
    "noise_generator",
    "save_checkpoint",
]
