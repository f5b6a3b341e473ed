"""Smooth Tchebycheff scalarisation (Lin et al., 2024), in the paper's multi-task setting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.methods._common import read_extra_state
from mtlkit.balancing.options import check_int, check_number, per_task_values, require_num_tasks
from mtlkit.balancing.registry import register

_EPS = 1e-20
"""Added inside the logarithms, as in the official code."""


@register("stch")
class SmoothTchebycheff(LossWeighting):
    """Smooth Tchebycheff: K·μ·log Σ exp(λₖ·log(Lₖ/nadirₖ)/μ) after a log-loss warm-up (STCH).

    Lin, Zhang, Yang, Liu, Wang & Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective
    Optimization", ICML 2024; multi-task setting as in the official code (github.com/Xi-L/STCH,
    ``STCH_MTL``, also in LibMTL).

    The smooth Tchebycheff scalarisation of objectives f with preference λ, reference point z*
    and smoothing μ is ``g_μ(f) = μ·log Σₖ exp(λₖ(fₖ − zₖ*)/μ)``: as μ → 0 it tends to the
    Tchebycheff ``maxₖ λₖ(fₖ − zₖ*)`` (all weight on the worst task), and for large μ its
    gradient tends to the average of the λₖ∇fₖ. For multi-task learning the paper works on
    normalised log losses, which this class follows:

    * **warm-up** (the first ``warmup_epochs`` epochs): ``total = Σₖ log Lₖ``; the mean losses
      over the last warm-up epoch become the normaliser ``nadirₖ`` (at the end of that epoch);
    * **then**: with ``f̃ₖ = log(Lₖ/nadirₖ)`` and reference point 0 (i.e. ``Lₖ = nadirₖ``)::

          total = K·μ·log Σₖ exp(λₖ·f̃ₖ / μ)

      The factor K (from the official code) keeps the gradient on the scale of the warm-up's
      ``Σ log Lₖ``: the weights on the ∇ log Lₖ sum to K for uniform λ, and tend to 1 each as
      μ grows.

    The reported weights are the effective ones, ``wₖ = ∂total/∂Lₖ``: ``1/Lₖ`` during warm-up and
    ``K·softmax(λf̃/μ)ₖ·λₖ/Lₖ`` afterwards. The losses must be positive. Preferences are rescaled
    to mean 1 (uniform: every λₖ = 1, the official code's setting, which has no preference
    vector). The official default ``STCH_warmup_epoch=4`` counts epochs from 0 and also warms up
    during epoch 4, i.e. 5 warm-up epochs: our default. With ``warmup_epochs=0`` there is no
    warm-up and the first step's losses are the normaliser. Epoch counting relies on
    :meth:`epoch_end`, which the training loop calls after every epoch; all state (epoch count,
    running sum, normaliser) travels in ``state_dict()``.

    Args:
        mu: μ > 0, the smoothing parameter (official MTL default 1.0).
        warmup_epochs: ≥ 0 epochs of log-loss warm-up before STCH (official default: 5).
        preferences: one positive preference per task (rescaled to mean 1); None = uniform.
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        mu: float = 1.0,
        warmup_epochs: int = 5,
        preferences: Sequence[float] | None = None,
    ) -> None:
        num_tasks = require_num_tasks("stch", num_tasks)
        self.mu = check_number("stch", "mu", mu, low=0.0, low_inclusive=False)
        self.warmup_epochs = check_int("stch", "warmup_epochs", warmup_epochs)
        if preferences is None:
            prefs = [1.0] * num_tasks
        else:
            if isinstance(preferences, (int, float)):
                raise ValueError("stch: preferences must be one positive number per task.")
            prefs = per_task_values("stch", "preferences", preferences, num_tasks, low=0.0)
            if not all(p > 0 for p in prefs):
                raise ValueError(f"stch: preferences must all be > 0, got {prefs}.")
        super().__init__(num_tasks=num_tasks)
        total = sum(prefs)
        self.register_buffer("preferences", torch.tensor([num_tasks * p / total for p in prefs]))
        self.register_buffer("nadir", torch.ones(num_tasks))
        self.register_buffer("loss_sum", torch.zeros(num_tasks))
        self._epoch = 0
        self._steps_in_epoch = 0
        self._nadir_ready = False

    @property
    def warming_up(self) -> bool:
        """True while the method still uses the log-loss warm-up objective."""
        return not self._nadir_ready

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        detached = losses.detach()
        if not self._nadir_ready and self.warmup_epochs == 0:
            self.nadir.copy_(detached.clamp_min(torch.finfo(self.nadir.dtype).tiny))
            self._nadir_ready = True
        self._steps_in_epoch += 1
        if not self._nadir_ready:
            if self._epoch == self.warmup_epochs - 1:
                self.loss_sum.add_(detached.to(self.loss_sum.dtype))
            shifted = losses + _EPS
            return shifted.log().sum(), 1.0 / shifted.detach()
        nadir = self.nadir.to(losses.dtype)
        prefs = self.preferences.to(losses.dtype)
        scaled = prefs * torch.log(losses / nadir + _EPS) / self.mu
        k = losses.numel()
        total = k * self.mu * torch.logsumexp(scaled, dim=0)
        weights = k * torch.softmax(scaled.detach(), dim=0) * prefs / (detached + _EPS * nadir)
        return total, weights

    @torch.no_grad()
    def epoch_end(self) -> None:
        if self._steps_in_epoch == 0:
            return
        if not self._nadir_ready and self._epoch == self.warmup_epochs - 1:
            mean = self.loss_sum / self._steps_in_epoch
            self.nadir.copy_(mean.clamp_min(torch.finfo(mean.dtype).tiny))
            self.loss_sum.zero_()
            self._nadir_ready = True
        self._epoch += 1
        self._steps_in_epoch = 0

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "epoch": self._epoch,
            "steps_in_epoch": self._steps_in_epoch,
            "nadir_ready": self._nadir_ready,
        }

    def set_extra_state(self, state: Any) -> None:
        state = read_extra_state("stch", state, ("epoch", "steps_in_epoch", "nadir_ready"))
        self._epoch = int(state["epoch"])
        self._steps_in_epoch = int(state["steps_in_epoch"])
        self._nadir_ready = bool(state["nadir_ready"])
