"""Random loss weighting (Lin et al., 2022): fresh random weights on the simplex at every step."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.methods._common import read_extra_state
from mtlkit.balancing.options import check_choice, check_seed
from mtlkit.balancing.registry import register


@register("rlw")
class RandomLossWeighting(LossWeighting):
    """Random loss weighting: Σ λₖLₖ with λ = softmax(λ̃), λ̃ ~ N(0, I) drawn afresh every step.

    Lin, Ye, Zhang & Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
    Multi-Task Learning", TMLR 2022 (first as "A Closer Look at Loss Weighting in Multi-Task
    Learning", arXiv:2111.10603, 2021).

    Every step samples ``λ̃ ~ p(λ̃)`` and normalises it with a softmax, ``λ = softmax(λ̃)``, so the
    weights lie on the simplex and **sum to 1** (the paper's definition and LibMTL's; no ×K
    factor, so the total is on the scale of the *mean* loss, not of ``ew``'s sum). The paper's
    default distribution is the standard normal; ``uniform`` (U(0, 1) before the softmax) is the
    other continuous choice it studies.

    Randomness comes only from the method's own ``torch.Generator`` (on the CPU, so the weights do
    not depend on the device), seeded with ``seed``; its state travels in ``state_dict()``, so a
    resumed run draws the same weights as an uninterrupted one.

    Args:
        distribution: ``"normal"`` (paper default) or ``"uniform"``.
        seed: seed of the method's generator.
    """

    _DISTRIBUTIONS = ("normal", "uniform")

    def __init__(
        self, num_tasks: int | None = None, *, distribution: str = "normal", seed: int = 0
    ) -> None:
        self.distribution = check_choice("rlw", "distribution", distribution, self._DISTRIBUTIONS)
        self.seed = check_seed("rlw", seed)
        super().__init__(num_tasks=num_tasks)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)

    def sample_weights(self, num_tasks: int) -> Tensor:
        """Draw the next (K,) weights on the simplex (on the CPU), advancing the generator."""
        if self.distribution == "normal":
            raw = torch.randn(num_tasks, generator=self.generator)
        else:
            raw = torch.rand(num_tasks, generator=self.generator)
        return torch.softmax(raw, dim=0)

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.sample_weights(losses.numel()).to(
            device=losses.device, dtype=losses.dtype, non_blocking=True
        )
        return (weights * losses).sum(), weights

    def get_extra_state(self) -> dict[str, Any]:
        return {"generator_state": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        state = read_extra_state("rlw", state, ("generator_state",))
        self.generator.set_state(state["generator_state"].to("cpu"))
