"""CR-MOGM: another Gramian weighting's weights smoothed by an exponential moving average."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.methods._common import read_extra_state
from mtlkit.balancing.options import check_number, check_numbers
from mtlkit.balancing.registry import create, register


@register("cr-mogm")
class CRMOGM(GramianWeighting):
    """CR-MOGM: λₖ = α·λₖ₋₁ + (1 − α)·λ̂ₖ, λ̂ₖ the weights of a wrapped Gramian weighting.

    Zhou, Zhang, Jiang, Zhang & Kwok, "On the Convergence of Stochastic Multi-Objective Gradient
    Manipulation and Beyond", NeurIPS 2022 (the correlation-reduced weights, Algorithm 2);
    torchjd's ``CRMOGMWeighting``.

    Stochastic gradient manipulation (MGDA, PCGrad, CAGrad, ...) is biased because its weights
    λ̂ₖ are computed from the same noisy gradients they weight; averaging the weights over steps
    reduces that correlation::

        λₖ = α λₖ₋₁ + (1 − α) λ̂ₖ,     d = Jᵀλₖ

    with λ₀ = ``initial_weights``, or λ̂₁ when not given (the first step is then the wrapped
    method's own). The paper's Corollary 1 lets α grow towards 1 as the learning rate decays;
    here α is fixed (set ``balancer.alpha`` between steps for a schedule). The wrapped method is
    any registered Gramian weighting (``mgda``, ``upgrad``, ``cagrad``, ``modo``, ...; with
    ``mgda-ub`` the EMA runs on the representation's Gramian); its state and λ are in
    ``state_dict()``. Same definition as torchjd's.

    Args:
        weighting: the registered name of the wrapped Gramian weighting (default ``"upgrad"``,
            torchjd's example; the paper's is MGDA).
        weighting_options: the wrapped method's options (default: its defaults).
        alpha: α in [0, 1]: 0 returns λ̂ₖ, 1 keeps λ₀ (default 0.9).
        initial_weights: λ₀, one number per task (default: λ̂₁).
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        weighting: str = "upgrad",
        weighting_options: Mapping[str, Any] | None = None,
        alpha: float = 0.9,
        initial_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(num_tasks)
        options = dict(weighting_options or {})
        if "weights_every" in options:
            raise ValueError(
                "cr-mogm: weights_every belongs to cr-mogm's own options, not the "
                "wrapped weighting's."
            )
        inner = create(weighting, num_tasks=num_tasks, **options)
        if not isinstance(inner, GramianWeighting) or isinstance(inner, CRMOGM):
            raise ValueError(
                f"cr-mogm: weighting must name a Gramian weighting other than cr-mogm (mgda, "
                f"upgrad, cagrad, modo, ...); {weighting!r} is not one."
            )
        self.weighting = inner
        self.on_features = inner.on_features
        self.alpha = check_number("cr-mogm", "alpha", alpha, low=0.0, high=1.0)
        self.initial: list[float] | None = None
        if initial_weights is not None:
            self.initial = check_numbers("cr-mogm", "initial_weights", initial_weights)
            if num_tasks is not None and len(self.initial) != num_tasks:
                raise ValueError(
                    f"cr-mogm: initial_weights has {len(self.initial)} entries but there are "
                    f"{num_tasks} tasks."
                )
        self.lambd: Tensor | None = None

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        current = self.weighting.weights_from_gramian(gramian, losses).detach()
        k = current.shape[0]
        previous = self.lambd
        if previous is None or previous.shape != (k,):
            if self.initial is None:
                previous = current
            elif len(self.initial) != k:
                raise ValueError(
                    f"cr-mogm: initial_weights has {len(self.initial)} entries, got {k} tasks."
                )
            else:
                previous = torch.tensor(self.initial)
        previous = previous.to(dtype=current.dtype, device=current.device)
        self.lambd = self.alpha * previous + (1.0 - self.alpha) * current
        return self.lambd

    def epoch_end(self) -> None:
        self.weighting.epoch_end()

    def get_extra_state(self) -> dict[str, Any]:
        return {"lambd": self.lambd}

    def set_extra_state(self, state: Any) -> None:
        self.lambd = read_extra_state("cr-mogm", state, ("lambd",))["lambd"]
