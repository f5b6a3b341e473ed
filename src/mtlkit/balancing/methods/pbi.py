"""PBI: penalty-based boundary intersection, MOEA/D's scalarisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.methods._common import preference_like, preference_vector
from mtlkit.balancing.options import check_number, check_numbers
from mtlkit.balancing.registry import register


@register("pbi")
class PBI(LossWeighting):
    """PBI: d₁ + θ·d₂, the losses' distance along the preference ray plus θ times that off it.

    Zhang & Li, "MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition", IEEE
    TEVC 11(6), 2007 (§III-C); torchjd's ``PBI`` scalariser.

    With ŵ = w/‖w‖ the unit preference direction and z* the reference (ideal) point::

        d₁ = (L − z*)ᵀŵ,   p = (L − z*) − d₁ŵ,   d₂ = ‖p‖,   total = d₁ + θd₂

    The reported weights are ∂total/∂L = ŵ + θ·p/‖p‖ (p/‖p‖ taken as 0 where p = 0 up to its
    rounding, K·eps·‖L − z*‖, where d₂ has no gradient: the subgradient of least norm). Weights
    can be negative: a task ahead of the ray is pushed back towards it. Difference from torchjd:
    it adds 1e-12 under d₂'s square root to keep the gradient finite at p = 0, shifting the value
    by up to 1e-6; here d₂ = ‖p‖ exactly.

    Args:
        theta: θ ≥ 0, the penalty on the distance off the ray (default 5, the paper's; torchjd
            has no default; 0 projects onto the ray).
        weights: w, one number ≥ 0 per task (default uniform).
        reference: z*, one number per task, a lower bound of the losses (default 0).
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        theta: float = 5.0,
        weights: Sequence[float] | None = None,
        reference: Sequence[float] | None = None,
    ) -> None:
        super().__init__(num_tasks)
        self.theta = check_number("pbi", "theta", theta, low=0.0)
        self.register_buffer(
            "preference", preference_vector("pbi", "weights", weights, num_tasks), persistent=False
        )
        ref = None
        if reference is not None:
            values = check_numbers("pbi", "reference", reference)
            if num_tasks is not None and len(values) != num_tasks:
                raise ValueError(
                    f"pbi: reference has {len(values)} entries but there are {num_tasks} tasks."
                )
            ref = torch.tensor(values, dtype=torch.float64)
        self.register_buffer("reference", ref, persistent=False)

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        w = preference_like("pbi", self.preference, losses)
        w = w / w.norm()
        shifted = losses
        if self.reference is not None:
            if self.reference.numel() != losses.numel():
                raise ValueError(
                    f"pbi: reference has {self.reference.numel()} entries, got "
                    f"{losses.numel()} losses."
                )
            shifted = losses - self.reference.to(dtype=losses.dtype, device=losses.device)
        along = shifted @ w
        off = shifted - along * w
        off_norm = off.detach().norm()
        # below the rounding of p's computation, p is 0 and its direction noise
        rounding = losses.numel() * torch.finfo(losses.dtype).eps * shifted.detach().norm()
        real = off_norm > rounding
        safe = torch.where(real, off_norm, torch.ones_like(off_norm))
        unit_off = torch.where(real, off.detach() / safe, torch.zeros_like(off))
        # d₂ = ‖p‖ written as p·p̂ (p̂ detached): the same value, and its gradient p̂ is 0 at p = 0
        total = along + self.theta * (off * unit_off).sum()
        return total, (w + self.theta * unit_off).detach()
