"""The preference of every training batch of a preference-conditioned network, drawn from a
Dirichlet distribution."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtlkit.balancing import Balancer
from mtlkit.models import PreferenceModel
from mtlkit.training.hooks.base import Hook, StepState
from mtlkit.training.state import FitProgress

__all__ = ["PreferenceHook"]


class PreferenceHook(Hook):
    """Before every step, draws a preference α ~ Dirichlet(concentration·1) and gives it to the
    model and, when it reads one (``set_preference``: the preference's scalarisation, EPO), to
    the balancer; after the step the model is back on the uniform preference, which validation
    and a plain evaluation serve.

    Every process draws from the same seed, so all of them train the same preference on their
    shards of the batch (the state is one generator, not one per process).

    Args:
        model: the preference-conditioned network.
        balancer: the balancing method.
        concentration: the Dirichlet's parameter (1: uniform on the simplex; COSMOS and PHN
            use 0.2 to 1).
        seed: seeds the generator.
    """

    name = "preference"

    def __init__(
        self, model: PreferenceModel, balancer: Balancer, concentration: float, seed: int
    ) -> None:
        if not concentration > 0:
            raise ValueError(f"the Dirichlet concentration must be > 0, got {concentration!r}.")
        self.model, self.balancer = model, balancer
        self.concentration = np.full(model.num_tasks, float(concentration))
        self.generator = np.random.default_rng(seed)

    def draw(self) -> torch.Tensor:
        """The next preference, (K,) float32 on the simplex."""
        values = self.generator.dirichlet(self.concentration)
        return torch.as_tensor(values / values.sum(), dtype=torch.float32)

    def _give(self, preference: torch.Tensor) -> None:
        self.model.set_preference(preference)
        set_balancer = getattr(self.balancer, "set_preference", None)
        if set_balancer is not None:
            set_balancer(preference)

    def before_step(self, step: StepState) -> None:
        self._give(self.draw())

    def after_step(self, step: StepState, progress: FitProgress) -> None:
        k = self.model.num_tasks
        self.model.set_preference(torch.full((k,), 1.0 / k))

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"generator": self.generator.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.bit_generator.state = state["generator"]
