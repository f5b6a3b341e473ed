"""Measuring models and training steps, for training and evaluation alike: the evaluation pass
(every task's metrics and mean loss over batches, in a precision, over noisy views), the input
noise and views, the precisions and their autocast, the record of a training epoch, and the
probes of training steps (their protocol, the task-gradient cosines, TAG's task affinity). It
imports data, models, tasks and balancing; training builds on it, and evaluation reads its
records without depending on any training code."""

from mtlkit.measure.affinity import TaskAffinityProbe, lookahead_affinity
from mtlkit.measure.evaluation_pass import Reports, evaluate, evaluate_with_losses
from mtlkit.measure.noise import InputNoise, noise_generator
from mtlkit.measure.probes import EveryNSteps, StepProbe, StepView
from mtlkit.measure.records import CosineSample, EpochRecord
from mtlkit.measure.task_cosine import TaskCosineRecorder, gramian_cosines
from mtlkit.measure.views import Views

__all__ = [
    "CosineSample",
    "EpochRecord",
    "EveryNSteps",
    "InputNoise",
    "Reports",
    "StepProbe",
    "StepView",
    "TaskAffinityProbe",
    "TaskCosineRecorder",
    "Views",
    "evaluate",
    "evaluate_with_losses",
    "gramian_cosines",
    "lookahead_affinity",
    "noise_generator",
]
