"""FairGrad: α-fair allocation of the update across tasks."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.options import check_number
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.fair import alpha_fair_weights


@register("fairgrad")
class FairGrad(GramianWeighting):
    """FairGrad: weights solving Gw = w^(−1/α), an α-fair share of the update for every task.

    Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024 (Algorithm 1, eq. 4).

    The update d = Σᵢ wᵢgᵢ maximises the α-fair utility Σᵢ uᵢ^{1−α}/(1−α) of the tasks'
    improvements uᵢ = gᵢᵀd; its weights solve, element-wise::

        G w = w^{−1/α},   w > 0

    α = 1 is proportional fairness (Nash-MTL's bargaining solution, without its norm clipping),
    α → ∞ max-min fairness, α → 0 the plain sum. Solved by Newton's method on the strictly convex
    ½wᵀGw − Σᵢ h(wᵢ), h' = w^{−1/α} (scipy's least-squares in the official code), to a residual
    below 1e-12, with a relative ridge of 1e-14 so that a task with a zero gradient gets a large
    finite weight instead of ∞ (which does not change d).
    Unlike MGDA the weights scale with the gradients: w(sG) = s^{−α/(1+α)}·w(G).

    Args:
        alpha: α > 0 (default 1.0).
    """

    def __init__(self, num_tasks: int | None = None, *, alpha: float = 1.0) -> None:
        super().__init__(num_tasks)
        self.alpha = check_number("fairgrad", "alpha", alpha, low=0.0, low_inclusive=False)

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        self._check_num_tasks(gramian.shape[-1])
        return alpha_fair_weights(gramian, self.alpha).to(gramian.dtype)
