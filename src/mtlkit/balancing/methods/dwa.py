"""Dynamic weight average (Liu, Johns & Davison, 2019): weights from the epochs' loss ratios."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.methods._common import read_extra_state
from mtlkit.balancing.options import check_number, require_num_tasks
from mtlkit.balancing.registry import register


@register("dwa")
class DynamicWeightAverage(LossWeighting):
    """Dynamic weight average: wₖ = K·softmax(rₖ/T), rₖ = L̄ₖ(t−1)/L̄ₖ(t−2) per epoch (MTAN).

    Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019 (eq. 7).

    With ``L̄ₖ(t)`` the mean training loss of task k over epoch t, epoch t uses::

        rₖ = L̄ₖ(t−1) / L̄ₖ(t−2),   wₖ(t) = K·exp(rₖ/T) / Σⱼ exp(rⱼ/T)

    and ``wₖ = 1`` for the first two epochs (no two previous means yet). A task whose loss fell
    less over the last epoch (larger ratio) gets more weight; a higher temperature ``T`` makes the
    weights more even. The weights change only between epochs: every step adds its detached
    losses to a running sum, and :meth:`epoch_end` (called by the training loop after every
    epoch) turns that sum into the epoch mean, shifts the two-epoch history and computes the next
    epoch's weights. An epoch without any step is not counted. All of this state travels in
    ``state_dict()``.

    Args:
        temperature: T > 0, the softmax temperature (paper: 2).
    """

    def __init__(self, num_tasks: int | None = None, *, temperature: float = 2.0) -> None:
        num_tasks = require_num_tasks("dwa", num_tasks)
        self.temperature = check_number(
            "dwa", "temperature", temperature, low=0.0, low_inclusive=False
        )
        super().__init__(num_tasks=num_tasks)
        self.register_buffer("weights", torch.ones(num_tasks))
        self.register_buffer("loss_sum", torch.zeros(num_tasks))
        self.register_buffer("epoch_means", torch.zeros(2, num_tasks))
        self._steps_in_epoch = 0
        self._epochs_seen = 0

    @property
    def epochs_seen(self) -> int:
        """How many (non-empty) epochs have ended so far."""
        return self._epochs_seen

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        self.loss_sum.add_(losses.detach().to(self.loss_sum.dtype))
        self._steps_in_epoch += 1
        weights = self.weights.to(dtype=losses.dtype, copy=True)
        return (weights * losses).sum(), weights

    @torch.no_grad()
    def epoch_end(self) -> None:
        if self._steps_in_epoch == 0:
            return
        mean = self.loss_sum / self._steps_in_epoch
        # Row 0 holds L̄(t−2), row 1 holds L̄(t−1) once the new mean is in.
        self.epoch_means[0].copy_(self.epoch_means[1])
        self.epoch_means[1].copy_(mean)
        self._epochs_seen += 1
        self.loss_sum.zero_()
        self._steps_in_epoch = 0
        if self._epochs_seen >= 2:
            ratios = self.epoch_means[1] / self.epoch_means[0]
            self.weights.copy_(self.num_tasks * torch.softmax(ratios / self.temperature, dim=0))

    def get_extra_state(self) -> dict[str, Any]:
        return {"steps_in_epoch": self._steps_in_epoch, "epochs_seen": self._epochs_seen}

    def set_extra_state(self, state: Any) -> None:
        state = read_extra_state("dwa", state, ("steps_in_epoch", "epochs_seen"))
        self._steps_in_epoch = int(state["steps_in_epoch"])
        self._epochs_seen = int(state["epochs_seen"])
