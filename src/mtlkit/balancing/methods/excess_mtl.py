"""ExcessMTL: exponentiated-gradient task weights driven by estimated excess risks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import GradientAggregator
from mtlkit.balancing.methods._common import check_jacobian, read_extra_state
from mtlkit.balancing.options import check_int, check_number
from mtlkit.balancing.registry import register

_EPS = 1e-7
"""The AdaGrad ε under the square root and the guard of the baseline division (official code)."""

_STATE = ("sq_grad_sum", "weights", "baseline", "warmup_sum", "steps")


@register("excess-mtl")
class ExcessMTL(GradientAggregator):
    """ExcessMTL: weights w ← softmax(log w + η·Êₖ), Êₖ the task's estimated excess risk.

    He, Liu, Zhang, Chen & Zhao, "Robust Multi-Task Learning with Excess Risks", ICML 2024
    (eqs. 6, 7 and 9; §3.2 for the scale processing); torchjd's ``ExcessMTL``.

    Each task's excess risk is estimated by a second-order Taylor expansion with an AdaGrad
    diagonal Hessian: with S the running sum of the squared task gradients (a K×P state)::

        S ← S + J⊙J,    Êₖ = Σₚ Jₖₚ² / √(Sₖₚ + ε)                    (eqs. 6-7)

    The first step's estimates (or, with ``n_warmup_steps`` > 0, their mean over the warm-up
    steps, during which the weights stay uniform) become the baseline E⁰ and later estimates are
    divided by it (Êₖ/(E⁰ₖ + ε)). The weights take an exponentiated-gradient step on the
    simplex, in log space so that a huge estimate saturates rather than overflows, and the update
    is their combination of the task gradients::

        w ← softmax(log w + η·Ê),    d = Jᵀw                          (eq. 9)

    Weights start uniform (1/K, the paper's; the official code and LibMTL start at 1). Same
    definition as torchjd's. Needs the whole Jacobian; S costs K×P memory, like the Jacobian
    itself. All state is in ``state_dict()``.

    Args:
        robust_step_size: η > 0, the step size of the weights (default 1).
        n_warmup_steps: ≥ 0 steps with uniform weights that collect the baseline (default 0: the
            first step's estimates; the paper suggests 3 epochs' worth).
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        robust_step_size: float = 1.0,
        n_warmup_steps: int = 0,
    ) -> None:
        super().__init__(num_tasks)
        self.robust_step_size = check_number(
            "excess-mtl", "robust_step_size", robust_step_size, low=0.0, low_inclusive=False
        )
        self.n_warmup_steps = check_int("excess-mtl", "n_warmup_steps", n_warmup_steps)
        self._state: dict[str, Any] = {}

    def _fresh_state(self, jacobian: Tensor) -> dict[str, Any]:
        k = jacobian.shape[0]
        return {
            "sq_grad_sum": torch.zeros_like(jacobian),
            "weights": torch.full((k,), 1.0 / k, dtype=jacobian.dtype, device=jacobian.device),
            "baseline": None,
            "warmup_sum": jacobian.new_zeros(k),
            "steps": 0,
        }

    @torch.no_grad()
    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = check_jacobian(jacobian)
        self._check_num_tasks(k)
        j = jacobian.detach()
        state = self._state
        if not state or state["sq_grad_sum"].shape != j.shape:
            state = self._state = self._fresh_state(j)
        squares = j * j
        state["sq_grad_sum"] = state["sq_grad_sum"].to(j) + squares
        excess = (squares / (state["sq_grad_sum"] + _EPS).sqrt()).sum(dim=1)
        weights = state["weights"].to(j)
        state["steps"] += 1
        if state["steps"] <= self.n_warmup_steps:
            state["warmup_sum"] = state["warmup_sum"].to(j) + excess
            return weights @ j
        if state["baseline"] is None:
            if self.n_warmup_steps > 0:
                state["baseline"] = state["warmup_sum"].to(j) / self.n_warmup_steps
                excess = excess / (state["baseline"] + _EPS)
            else:
                state["baseline"] = excess
        else:
            excess = excess / (state["baseline"].to(j) + _EPS)
        weights = torch.softmax(weights.log() + self.robust_step_size * excess, dim=0)
        state["weights"] = weights
        return weights @ j

    def get_extra_state(self) -> dict[str, Any]:
        return dict(self._state)

    def set_extra_state(self, state: Any) -> None:
        self._state = dict(read_extra_state("excess-mtl", state, _STATE)) if state else {}
