"""The sections of training: balancing, optimizer, schedule, loop, penalties, input noise and
evaluation views."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from mtlkit.config.section import _one_of, _Section
from mtlkit.measure.precision import PRECISIONS, check_precision
from mtlkit.training.optim import OPTIMIZERS, SCHEDULES


class BalancerConfig(_Section):
    """The balancing method by name, with its own options (see ``mtlkit methods``)."""

    model_config = ConfigDict(extra="allow")
    name: str = "ew"

    @property
    def options(self) -> dict[str, Any]:
        """The method's options: every key but ``name``."""
        return dict(self.model_extra or {})


class OptimConfig(_Section):
    """The optimizer."""

    name: str = "sgd"
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only")
    weight_decay: float = Field(0.0, ge=0.0, description="on the model's parameters only")
    task_lr: dict[str, float] = Field(
        default_factory=dict, description="task -> its head's own learning rate"
    )
    task_lr_scale: dict[str, float] = Field(
        default_factory=dict, description="task -> its head's learning rate as a multiple of lr"
    )
    group_lr_scale: dict[str, float] = Field(
        default_factory=dict, description="layer group (stage1, ..., heads) -> a multiple of lr"
    )

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _one_of(OPTIMIZERS, value)

    @field_validator("task_lr", "task_lr_scale", "group_lr_scale")
    @classmethod
    def _positive_rates(cls, value: dict[str, float]) -> dict[str, float]:
        for key, rate in value.items():
            if not rate > 0:
                raise ValueError(f"{key}: must be a positive number, got {rate}")
        return value


class ScheduleConfig(_Section):
    """The learning-rate schedule, stepped once per epoch."""

    name: str = "none"
    step_size: int = Field(10, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step: decay factor")

    @field_validator("name")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        return _one_of(SCHEDULES, value)


class TrainConfig(_Section):
    """The training loop."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    device: str = "auto"
    channels_last: bool = True
    precision: str = Field("fp32", description="fp32, bf16 (CPU/CUDA autocast), fp16 (CUDA)")
    compile: bool = Field(False, description="torch.compile the shared encoder")
    progress: bool = True
    log_task_cosine_every: int = Field(
        0, ge=0, description="record the task-gradient cosines every N steps (0: off)"
    )
    checkpoint_every: int = Field(
        100, ge=0, description="steps between checkpoints within an epoch (0: epoch ends only)"
    )
    check_finite_every: int = Field(
        50, ge=1, description="steps between reads of the non-finite flags (one host sync each)"
    )
    on_nonfinite: Literal["stop", "skip"] = "stop"

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU index) or 'mps'")
        return value

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        return _one_of(PRECISIONS, value)

    @model_validator(mode="after")
    def _precision_on_device(self) -> TrainConfig:
        if self.device != "auto":  # 'auto' is checked by the trainer, once the device is known
            check_precision(self.precision, self.device)
        return self


class PenaltyConfig(_Section):
    """An L1 and an L2 penalty on one group of parameters: l1·Σ|θ| + l2/2·Σθ²."""

    l1: float = Field(0.0, ge=0.0)
    l2: float = Field(0.0, ge=0.0)


class RegularizationConfig(_Section):
    """L1 / L2 penalties per parameter group, separate from the optimizer's weight decay."""

    trunk: PenaltyConfig = Field(default_factory=PenaltyConfig)
    heads: PenaltyConfig = Field(default_factory=PenaltyConfig)
    balancer: PenaltyConfig = Field(default_factory=PenaltyConfig)


class NoiseConfig(_Section):
    """Noise on the training inputs (off in evaluation unless ``eval.views`` > 1)."""

    gaussian: float = Field(0.0, ge=0.0, description="standard deviation")
    salt_pepper: float = Field(0.0, ge=0.0, le=1.0, description="fraction of values")
    shift: int = Field(0, ge=0, description="images: random shifts of at most this many px")
    per_task: bool = Field(False, description="an independent draw for each task")


class EvalConfig(_Section):
    """Evaluation and prediction: M noisy views of each input combined into one output."""

    views: int = Field(1, ge=1, description="1: the input as is")
    combine: Literal["vote", "mean"] = "vote"
