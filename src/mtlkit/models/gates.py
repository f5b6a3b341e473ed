"""Gates: per-sample weights over experts, summing to one.

:class:`SoftmaxGate` (MMoE, CGC, PLE) is a linear map followed by a softmax: every expert gets
some weight. :class:`DSelectGate` (Hazimeh et al., NeurIPS 2021) selects at most ``k`` experts
once its smooth-step functions saturate, and stays differentiable on the way there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DSelectGate", "SoftmaxGate", "smooth_step"]


class SoftmaxGate(nn.Module):
    """``softmax(W x + b)`` over ``experts`` experts, for (N, in_features) inputs."""

    def __init__(self, in_features: int, experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, experts)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.linear(x.flatten(1)), dim=-1)


def smooth_step(t: Tensor, gamma: float) -> Tensor:
    """The cubic smooth-step of DSelect-k: 0 for ``t ≤ -γ/2``, 1 for ``t ≥ γ/2``, and
    ``-2t³/γ³ + 3t/(2γ) + 1/2`` in between (continuously differentiable)."""
    cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, 0.0, torch.where(t >= gamma / 2, 1.0, cubic))


class DSelectGate(nn.Module):
    """DSelect-k's per-sample gate over ``experts`` experts (a power of two).

    Each of ``k`` selectors reads ``m = log₂ experts`` smooth-step values ``s = S(z)`` of a
    linear map of the input and weighs expert ``i`` by ``rᵢ = Πⱼ (sⱼ if bit j of i else 1 - sⱼ)``
    (the weights sum to one); the gate is the softmax-weighted sum of the k selectors. When every
    ``s`` is 0 or 1 each selector picks exactly one expert, so at most ``k`` experts get weight.
    The paper's entropy regulariser that speeds up this saturation is not applied.

    Args:
        in_features: the width of the (flattened) input.
        experts: the number of experts, a power of two (≥ 2).
        k: the number of selectors (the most experts chosen), 1 ≤ k ≤ experts.
        gamma: the width of the smooth-step's transition, > 0.
    """

    def __init__(self, in_features: int, experts: int, k: int, gamma: float = 1.0) -> None:
        super().__init__()
        check_dselect(experts, k, gamma)
        bits = experts.bit_length() - 1
        self.k, self.gamma, self.bits = k, gamma, bits
        self.codes = nn.Linear(in_features, k * bits)
        self.choice = nn.Linear(in_features, k)
        index = torch.arange(experts)
        self.register_buffer(
            "binary", ((index[:, None] >> torch.arange(bits)) & 1).float(), persistent=False
        )

    def selectors(self, x: Tensor) -> Tensor:
        """(N, k, experts): each selector's weights over the experts."""
        # unflatten, not view(len(x), ...): the batch size stays symbolic in an exported graph
        z = self.codes(x.flatten(1)).unflatten(1, (self.k, self.bits))
        s = smooth_step(z, self.gamma)[:, :, None, :]
        return (self.binary * s + (1 - self.binary) * (1 - s)).prod(-1)

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.softmax(self.choice(x.flatten(1)), dim=-1)
        return (weights[:, :, None] * self.selectors(x)).sum(1)


def check_dselect(experts: int, k: int, gamma: float) -> None:
    """Refuse DSelect-k options it cannot take, naming the option."""
    if experts < 2 or experts & (experts - 1):
        raise ValueError(
            f"experts must be a power of two (2, 4, 8, …) for DSelect-k, got {experts}."
        )
    if not 1 <= k <= experts:
        raise ValueError(f"k must be in 1..experts ({experts}), got {k}.")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}.")
