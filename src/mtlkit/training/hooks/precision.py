"""Mixed precision in the loop: the forward pass under autocast and, for ``fp16``, the dynamic
loss scale (see :mod:`mtlkit.training.precision`)."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch

from mtlkit.balancing import Balancer
from mtlkit.measure.precision import autocast_context
from mtlkit.models import MultiTaskModel
from mtlkit.training.hooks.base import Hook, StepState
from mtlkit.training.precision import LossScale

__all__ = ["PrecisionHook"]


class PrecisionHook(Hook):
    """Runs the forward pass and the losses in ``precision``; with ``fp16`` scales the heads'
    outputs, unscales the gradients after the backward pass and refuses the update of a step
    whose gradients overflowed (the balancer's state is then put back as before the step).

    Args:
        precision: ``fp32``, ``bf16`` or ``fp16`` (checked by the trainer).
        device: the training device.
        model: the trained model (its gradients are unscaled).
        balancer: the balancer (its state is restored after an overflow).
    """

    name = "precision"

    def __init__(
        self, precision: str, device: torch.device, model: MultiTaskModel, balancer: Balancer
    ) -> None:
        self.precision = precision
        self.device = device
        self.model = model
        self.balancer = balancer
        self.loss_scale = LossScale() if precision == "fp16" else None
        self._balancer_before: dict[str, Any] | None = None

    def forward_context(self) -> contextlib.AbstractContextManager[Any]:
        return autocast_context(self.precision, self.device)

    def before_step(self, step: StepState) -> None:
        if self.loss_scale is not None:
            self._balancer_before = copy.deepcopy(self.balancer.state_dict())

    def after_forward(self, step: StepState) -> None:
        if self.loss_scale is not None:
            step.outputs = self.loss_scale.apply(step.outputs)

    def allow_update(self, step: StepState) -> bool:
        if self.loss_scale is None:
            return True
        finite = self.loss_scale.unscale(self.model)
        self.loss_scale.update()
        if not finite and self._balancer_before is not None:  # overflow: the step never was
            self.balancer.load_state_dict(self._balancer_before)
        self._balancer_before = None
        return finite

    def state_dict(self) -> dict[str, Any]:
        """The loss scale (``fp16``), else nothing."""
        return {} if self.loss_scale is None else {"loss_scale": self.loss_scale.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.loss_scale is not None:
            self.loss_scale.load_state_dict(state["loss_scale"])
