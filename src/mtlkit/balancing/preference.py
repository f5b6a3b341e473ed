"""The training objective of a preference-conditioned network (``model.preference``) under
balancing ``ew``: the preference's scalarisation, with COSMOS's cosine term."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting

__all__ = ["PreferenceScalarisation"]


class PreferenceScalarisation(LossWeighting):
    """Σₖ αₖLₖ − λ·cos(L, α) for the preference α of the current batch (set by the training's
    preference hook, :meth:`set_preference`); λ = 0 is linear scalarisation (PHN-LS, PaMaL).

    The weights it reports are the gradient of the objective in the losses,
    αₖ − λ·∂cos(L, α)/∂Lₖ.

    Args:
        num_tasks: K.
        cosine_weight: λ ≥ 0.
    """

    def __init__(self, num_tasks: int, *, cosine_weight: float = 0.0) -> None:
        super().__init__(num_tasks=num_tasks)
        if not cosine_weight >= 0.0:
            raise ValueError(f"cosine_weight must be a number >= 0, got {cosine_weight!r}.")
        self.cosine_weight = float(cosine_weight)
        self.register_buffer("preference", torch.full((num_tasks,), 1.0 / num_tasks))

    def set_preference(self, preference: Tensor) -> None:
        """Scalarise with ``preference`` from the next step on."""
        self.preference = preference.detach().to(self.preference.device, torch.float32).clone()

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.preference.to(dtype=losses.dtype, device=losses.device)
        total = (alpha * losses).sum()
        if self.cosine_weight > 0:
            total = total - self.cosine_weight * torch.cosine_similarity(losses, alpha, dim=0)
        (weights,) = torch.autograd.grad(total, losses, retain_graph=True)
        return total, weights
