"""COSMOS: a linear scalarisation rewarded for the losses' alignment with the preference."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.methods._common import preference_like, preference_vector
from mtlkit.balancing.options import check_number
from mtlkit.balancing.registry import register


@register("cosmos")
class COSMOS(LossWeighting):
    """COSMOS: Σ rₖLₖ − λ·cos(r, L), a linear scalarisation that favours losses aligned with r.

    Ruchte & Grabocka, "Scalable Pareto Front Approximation for Deep Multi-Objective Learning",
    ICDM 2021 (arXiv:2103.13392, eq. 4); torchjd's ``COSMOS`` scalariser.

    With r the preference vector and L the (K,) losses::

        total = rᵀL − λ · rᵀL / (‖r‖‖L‖)

    The cosine penalty pulls the vector of losses towards the ray of r, which spreads the
    solutions over the Pareto front as r varies. The reported weights are ∂total/∂L::

        w = r − λ (r/(‖r‖‖L‖) − (rᵀL)·L/(‖r‖‖L‖³))

    Difference from the paper: COSMOS also feeds r to the network and draws r from a Dirichlet
    distribution at every step, to learn the whole front with one model; that is a model choice,
    so here r is fixed (this method is the objective only, as torchjd's). torchjd's cosine
    clamps ‖r‖‖L‖ at 1e-8; here only a zero ‖L‖ is guarded (the penalty is then 0).

    Args:
        lambda_: λ ≥ 0, the weight of the cosine penalty (default 1; the paper uses 0.01 to 8;
            torchjd has no default; 0 is the plain linear scalarisation).
        weights: r, one number ≥ 0 per task (default uniform, 1/K each).
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        lambda_: float = 1.0,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(num_tasks)
        self.lambda_ = check_number("cosmos", "lambda_", lambda_, low=0.0)
        self.register_buffer(
            "preference",
            preference_vector("cosmos", "weights", weights, num_tasks),
            persistent=False,
        )

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        r = preference_like("cosmos", self.preference, losses)
        linear = (r * losses).sum()
        r_norm = r.norm()
        loss_norm = losses.norm()
        safe = torch.where(loss_norm > 0, loss_norm, torch.ones_like(loss_norm))
        cosine = torch.where(loss_norm > 0, linear / (r_norm * safe), torch.zeros_like(linear))
        total = linear - self.lambda_ * cosine
        with torch.no_grad():
            values, n = losses.detach(), safe.detach()
            dcos = r / (r_norm * n) - linear.detach() * values / (r_norm * n**3)
            weights = r - self.lambda_ * torch.where(loss_norm > 0, dcos, torch.zeros_like(dcos))
        return total, weights
