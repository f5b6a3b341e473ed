"""Training: the loop, the training state (exact resume), processes training together
(torchrun/DDP), non-finite detection, stop signals, optimizers and schedules, checkpoints, logs;
the practitioner's techniques (input noise, noisy views, distillation teachers, L1/L2 penalties,
temperature scaling). The evaluation pass, the noise and views, the epoch record and the task
cosines live in :mod:`mtlkit.measure` (evaluation reads them too) and are re-exported here."""

from mtlkit.measure.evaluation_pass import evaluate, evaluate_with_losses
from mtlkit.measure.noise import InputNoise, noise_generator
from mtlkit.measure.records import CosineSample, EpochRecord
from mtlkit.measure.task_cosine import TaskCosineRecorder
from mtlkit.measure.views import Views
from mtlkit.training.calibration import fit_temperatures
from mtlkit.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mtlkit.training.distill import EMATeacher, FrozenTeachers, Teacher
from mtlkit.training.distributed import LaunchError, ProcessGroupReplicas, process_group
from mtlkit.training.finite import DivergedError
from mtlkit.training.hooks import Hook, StepState
from mtlkit.training.host_memory import retain_freed_memory
from mtlkit.training.optim import (
    ParamGroup,
    create_optimizer,
    create_scheduler,
    learning_rates,
)
from mtlkit.training.penalties import GROUPS, ParameterPenalties, Penalty
from mtlkit.training.signals import StopSignals, TrainingInterrupted
from mtlkit.training.state import FitProgress, FitResult, capture_rng, restore_rng, seed_process
from mtlkit.training.trainer import Trainer

__all__ = [
    "GROUPS",
    "Hook",
    "StepState",
    "CheckpointError",
    "CosineSample",
    "DivergedError",
    "EMATeacher",
    "EpochRecord",
    "FitProgress",
    "FitResult",
    "FrozenTeachers",
    "InputNoise",
    "LaunchError",
    "ParamGroup",
    "ParameterPenalties",
    "Penalty",
    "ProcessGroupReplicas",
    "StopSignals",
    "TaskCosineRecorder",
    "Teacher",
    "Trainer",
    "TrainingInterrupted",
    "Views",
    "capture_rng",
    "create_optimizer",
    "create_scheduler",
    "evaluate",
    "learning_rates",
    "evaluate_with_losses",
    "fit_temperatures",
    "load_checkpoint",
    "noise_generator",
    "process_group",
    "restore_rng",
    "retain_freed_memory",
    "save_checkpoint",
    "seed_process",
]
