"""How the engine obtains the per-task gradients: :class:`Engine` and its strategies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["AUTO_TABLE", "DEFAULT_ENGINE", "STRATEGIES", "Engine", "Strategy"]

Strategy = Literal["auto", "loop", "batched"]
STRATEGIES: tuple[str, ...] = ("loop", "batched")
"""The strategies a user can force; ``"auto"`` resolves to one of them."""

AUTO_TABLE: dict[str, tuple[tuple[int, str], ...]] = {
    # device type -> ((largest K, strategy), ...); the first row with K <= largest K wins.
    # CPU, measured with benchmarks/engine.py (LeNet and the seed CNN, batch 256, K = 2, 10, 40,
    # 1 and 2 threads): "loop" wins at every K on both. The vmapped backward pays for batching
    # rules (the convolution weight gradient under vmap concatenates the input K times, ReLU's
    # backward broadcasts), 1.1-1.3x the loop's time at K = 2 and 1.5-3.7x at K = 40; torchjd's
    # layer-by-layer autogram Gramian is slower still (2-3x the loop at K = 2).
    # Other devices are not measured yet and get "loop", the safe choice.
    "cpu": ((1_000_000, "loop"),),
}
"""What ``"auto"`` picks by device type and number of tasks K (unlisted devices: ``"loop"``)."""


@dataclass(frozen=True)
class Engine:
    """How a gradient aggregator obtains the per-task gradients.

    Args:
        strategy: ``"auto"`` (the fastest measured for the device and K, see :data:`AUTO_TABLE`),
            ``"loop"`` (K backward passes through one forward graph) or ``"batched"`` (one vmapped
            backward of the K tasks). All give the same result up to rounding.

    A balancer holds one as ``balancer.engine`` (``None`` means ``Engine()``)::

        bal = create("upgrad", num_tasks=2)
        bal.engine = Engine(strategy="batched")
    """

    strategy: Strategy = "auto"

    def __post_init__(self) -> None:
        if self.strategy != "auto" and self.strategy not in STRATEGIES:
            choices = ", ".join(repr(s) for s in ("auto", *STRATEGIES))
            raise ValueError(f"strategy must be one of {choices}; got {self.strategy!r}.")

    def resolve(self, device: torch.device | str, num_tasks: int) -> str:
        """The strategy this engine uses for ``num_tasks`` tasks on ``device``."""
        if self.strategy != "auto":
            return self.strategy
        for max_tasks, strategy in AUTO_TABLE.get(torch.device(device).type, ()):
            if num_tasks <= max_tasks:
                return strategy
        return "loop"


DEFAULT_ENGINE = Engine()
"""The engine of a balancer whose ``engine`` is ``None``."""
