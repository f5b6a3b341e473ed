"""MoDo: one projected-gradient step of MGDA's weights per training step."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.methods._common import read_extra_state, simplex_state
from mtlkit.balancing.options import check_number
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.gramian import check_gramian, work_dtype
from mtlkit.balancing.solvers.simplex import project_simplex


@register("modo")
class MoDo(GramianWeighting):
    """MoDo: λ ← Π_Δ(λ − γ(G + ρI)λ) once per step, d = Σ λₖgₖ (stochastic MGDA, no tracking).

    Chen, Fernando, Ying & Chen, "Three-Way Trade-Off in Multi-Objective Learning: Optimization,
    Generalization and Conflict-Avoidance", JMLR 25 (2024), Algorithm 1 (eqs. 2.9a-b); torchjd's
    ``MoDoWeighting``.

    λ ∈ Δ (the probability simplex, uniform at the start) takes one projected-gradient step per
    training step on MGDA's objective ½λᵀGλ + ½ρ‖λ‖²::

        λ ← Π_Δ(λ − γ (G λ + ρ λ)),      d = Jᵀλ

    Difference from the paper and torchjd: they read ``G = J₁J₂ᵀ`` from two independent
    mini-batches (an unbiased estimate of the Gramian of the expected gradients); mtlkit's
    engine differentiates one batch, so here G = JJᵀ of the step's batch, which makes the λ
    update biased by the gradients' noise (the paper's analysis needs the two batches). With the
    same G, the weights equal torchjd's. λ is kept in ``state_dict()``; G is not rescaled, so γ
    is in the units of the squared gradient norms (as in the paper).

    Args:
        gamma: γ > 0, the step size of λ (paper/torchjd default 0.1).
        rho: ρ ≥ 0, the ridge of λ's objective (torchjd default 0.1).
    """

    def __init__(
        self, num_tasks: int | None = None, *, gamma: float = 0.1, rho: float = 0.1
    ) -> None:
        super().__init__(num_tasks)
        self.gamma = check_number("modo", "gamma", gamma, low=0.0, low_inclusive=False)
        self.rho = check_number("modo", "rho", rho, low=0.0)
        self.lambd: Tensor | None = None

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = check_gramian(gramian)
        self._check_num_tasks(k)
        g = gramian.detach().to(work_dtype(gramian.device))
        lambd = simplex_state(self.lambd, g)
        lambd = project_simplex(lambd - self.gamma * (g @ lambd + self.rho * lambd))
        self.lambd = lambd
        return lambd.to(gramian.dtype)

    def get_extra_state(self) -> dict[str, Any]:
        return {"lambd": self.lambd}

    def set_extra_state(self, state: Any) -> None:
        self.lambd = read_extra_state("modo", state, ("lambd",))["lambd"]
