"""L1 and L2 penalties per parameter group, separate from the optimizer's weight decay.

A group's penalty is ``l1·Σ|θ| + l2/2·Σθ²``. Its gradient, ``l1·sign(θ) + l2·θ``, is added to
the parameters' gradients *after* the balancer has combined the task losses, so that the
penalty is never weighted or projected as if it were a task. Unlike weight decay it can
promote sparsity (L1) and can be set per group: the shared trunk, the task heads, and the
balancer's own parameters (e.g. uncertainty weighting's log-variances).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

GROUPS = ("trunk", "heads", "balancer")
"""The parameter groups a penalty can target."""


@dataclass(frozen=True)
class Penalty:
    """The strengths of the L1 and L2 penalty on one group (both ≥ 0)."""

    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        if not (self.l1 >= 0.0 and self.l2 >= 0.0):
            raise ValueError(f"penalty strengths must be ≥ 0, got l1={self.l1}, l2={self.l2}.")

    @property
    def active(self) -> bool:
        """Whether the penalty adds anything."""
        return self.l1 > 0.0 or self.l2 > 0.0


class ParameterPenalties:
    """Adds each group's penalty gradient to its parameters' ``.grad`` and reports its value.

    Args:
        groups: group name -> its parameters.
        penalties: group name -> its :class:`Penalty`; groups without one are not penalised.
    """

    def __init__(
        self, groups: Mapping[str, Iterable[nn.Parameter]], penalties: Mapping[str, Penalty]
    ) -> None:
        unknown = [name for name in penalties if name not in groups]
        if unknown:
            raise ValueError(f"no parameter group {unknown[0]!r}; groups: {', '.join(groups)}.")
        self._groups = {
            name: (penalty, [p for p in groups[name] if p.requires_grad])
            for name, penalty in penalties.items()
            if penalty.active
        }

    @property
    def active(self) -> bool:
        """Whether any group is penalised."""
        return bool(self._groups)

    @torch.no_grad()
    def apply(self) -> dict[str, float]:
        """Add the penalties' gradients to ``.grad`` (call after the backward pass, before the
        optimizer step); returns each penalised group's penalty value before the step."""
        values: dict[str, float] = {}
        for name, (penalty, params) in self._groups.items():
            total = torch.zeros((), dtype=torch.float64)
            for param in params:
                step = torch.zeros_like(param)
                if penalty.l1:
                    step.add_(param.sign(), alpha=penalty.l1)
                    total += penalty.l1 * float(param.abs().sum())
                if penalty.l2:
                    step.add_(param, alpha=penalty.l2)
                    total += penalty.l2 / 2 * float(param.square().sum())
                param.grad = step if param.grad is None else param.grad.add_(step)
            values[name] = float(total)
        return values
