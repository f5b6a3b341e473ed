"""How the engine obtains the per-task gradients: :class:`Engine` and its strategies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_ENGINE", "STRATEGIES", "Engine", "Strategy"]

Strategy = Literal["loop", "batched"]
STRATEGIES: tuple[str, ...] = ("loop", "batched")
"""The strategies an :class:`Engine` offers; the first is the default."""


@dataclass(frozen=True)
class Engine:
    """How a gradient aggregator obtains the per-task gradients.

    Args:
        strategy: ``"loop"`` (the default: K backward passes through one forward graph) or
            ``"batched"`` (one vmapped backward of the K tasks). Both give the same result up to
            floating-point rounding. On CPU ``"loop"`` was the faster at every K measured
            (``benchmarks/engine.py``: LeNet and the seed CNN, K = 2 to 40, 1 and 2 threads);
            the vmapped backward pays for batching rules (the convolution weight gradient under
            vmap concatenates the input K times), 1.1-1.3x the loop's time at K = 2 and 1.5-3.7x
            at K = 40. ``"batched"`` is there to try on other devices.

    A gradient aggregator holds one as ``balancer.engine`` (``None`` means ``Engine()``)::

        bal = create("upgrad", num_tasks=2)
        bal.engine = Engine(strategy="batched")
    """

    strategy: Strategy = "loop"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            choices = ", ".join(repr(s) for s in STRATEGIES)
            raise ValueError(
                f"strategy must be one of {choices}; got {self.strategy!r} (the default is "
                f"{STRATEGIES[0]!r})."
            )


DEFAULT_ENGINE = Engine()
"""The engine of a balancer whose ``engine`` is ``None``."""
