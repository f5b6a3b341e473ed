"""FAMO (Liu et al., 2023): fast adaptive multitask optimisation with O(1) cost per step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.methods._common import adam_step_, read_extra_state
from mtlkit.balancing.options import check_number, per_task_values, require_num_tasks
from mtlkit.balancing.registry import register

_EPS = 1e-8
"""Added to ``Lₖ − minₖ`` inside the logarithm, as in the official code."""


@register("famo")
class FAMO(LossWeighting):
    """FAMO: a step on Σ cₖ log(Lₖ − minₖ) with softmax logits learnt so all losses fall evenly.

    Liu, Feng, Stone & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023
    (Algorithm 1), following the official code (github.com/Cranial-XIX/FAMO, ``famo.py``).

    The method keeps task logits ξ (initialised to 0) and weights ``z = softmax(ξ)``. With
    ``Dₖ = Lₖ − minₖ + ε`` (ε = 1e-8) the model receives the gradient of::

        total = Σₖ (zₖ/c)·log Dₖ,   c = Σⱼ zⱼ/Dⱼ   (c held constant)

    i.e. a step along ``Σₖ wₖ∇Lₖ`` with the reported effective weights ``wₖ = zₖ/(c·Dₖ)``, which
    lie on the simplex like z. After the step, the logits follow the observed change of the log
    losses ``δₖ = log Dₖ(before) − log Dₖ(after)``: ``ξ ← ξ − β·(∇_ξ z)ᵀδ`` with weight decay γ,
    taken by Adam (learning rate ``w_lr`` = β, L2 weight decay ``gamma`` = γ), exactly as in the
    official code. A task whose loss decreased less than the others gains weight.

    One difference from the official code, forced by the interface: FAMO needs the losses *after*
    the optimiser step, which the official trainers get from an extra forward pass on the same
    batch. A balancer only sees the losses at the start of each step, so this implementation
    uses the next step's losses (on the next batch) as the "after" losses: at step t+1 it first
    updates ξ with ``δ = log D(t) − log D(t+1)`` and then weights step t+1 with the new z. The
    update is thus applied at the same point as in the official code (before step t+1) and costs
    no extra forward pass, but δ compares losses on two different batches, so it is noisier
    (mini-batch noise averages out over steps). The first step has no δ and uses z uniform.

    Default ``gamma`` = 0.01 is the official ``famo.py`` default; the paper tunes γ per benchmark
    (its scripts use 0.001 on several, LibMTL defaults to 1e-3). ``min_losses`` = 0 as in the
    paper (the losses must stay above it). The official example also clips the shared gradient
    to norm 1 after the backward pass; clipping is left to the training loop here. Logits, Adam
    moments and the previous log losses all travel in ``state_dict()``.

    Args:
        gamma: γ ≥ 0, the weight decay of the logits.
        w_lr: β > 0, the learning rate of the logits.
        min_losses: the lower bound of each loss (one number for all tasks, or one per task).
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        gamma: float = 0.01,
        w_lr: float = 0.025,
        min_losses: float | Sequence[float] = 0.0,
    ) -> None:
        num_tasks = require_num_tasks("famo", num_tasks)
        self.gamma = check_number("famo", "gamma", gamma, low=0.0)
        self.w_lr = check_number("famo", "w_lr", w_lr, low=0.0, low_inclusive=False)
        mins = per_task_values("famo", "min_losses", min_losses, num_tasks)
        super().__init__(num_tasks=num_tasks)
        self.register_buffer("logits", torch.zeros(num_tasks))
        self.register_buffer("min_losses", torch.tensor(mins))
        self.register_buffer("prev_log_losses", torch.zeros(num_tasks))
        self.register_buffer("exp_avg", torch.zeros(num_tasks))
        self.register_buffer("exp_avg_sq", torch.zeros(num_tasks))
        self._has_prev = False
        self._updates = 0

    @property
    def task_weights(self) -> Tensor:
        """The current softmax weights z (on the simplex), detached."""
        return torch.softmax(self.logits, dim=0)

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        shifted = losses - self.min_losses.to(losses.dtype) + _EPS
        log_shifted = shifted.log()
        current = log_shifted.detach().to(self.prev_log_losses.dtype)
        if self._has_prev:
            self.update_logits(self.prev_log_losses - current)
        self.prev_log_losses.copy_(current)
        self._has_prev = True
        z = torch.softmax(self.logits, dim=0).to(losses.dtype)
        inverse = z / shifted.detach()
        c = inverse.sum()
        total = (z / c * log_shifted).sum()
        return total, inverse / c

    @torch.no_grad()
    def update_logits(self, delta: Tensor) -> None:
        """One logit step from δ, the (K,) decrease of the log losses since the previous step."""
        z = torch.softmax(self.logits, dim=0)
        # (∂z/∂ξ)ᵀδ for z = softmax(ξ): z ⊙ (δ − ⟨z, δ⟩).
        grad = z * (delta - (z * delta).sum())
        self._updates += 1
        adam_step_(
            self.logits,
            grad,
            self.exp_avg,
            self.exp_avg_sq,
            self._updates,
            lr=self.w_lr,
            weight_decay=self.gamma,
        )

    def get_extra_state(self) -> dict[str, Any]:
        return {"has_prev": self._has_prev, "updates": self._updates}

    def set_extra_state(self, state: Any) -> None:
        state = read_extra_state("famo", state, ("has_prev", "updates"))
        self._has_prev = bool(state["has_prev"])
        self._updates = int(state["updates"])
