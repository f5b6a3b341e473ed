"""How the engine obtains the per-task gradients: :class:`Engine`, its strategies and its memory
budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

__all__ = [
    "DEFAULT_ENGINE",
    "DEFAULT_MEMORY_BUDGET",
    "GRAMIAN_PATHS",
    "STRATEGIES",
    "Engine",
    "GramianPath",
    "Strategy",
]

Strategy = Literal["loop", "batched"]
STRATEGIES: tuple[str, ...] = ("loop", "batched")
"""The strategies an :class:`Engine` offers; the first is the default."""

GramianPath = Literal["auto", "full", "layers"]
GRAMIAN_PATHS: tuple[str, ...] = ("auto", "full", "layers")
"""How a Gramian weighting obtains ``J Jᵀ``: ``"auto"`` (the default) takes ``"layers"`` when the
K×P Jacobian would exceed the memory budget, ``"full"`` otherwise."""

DEFAULT_MEMORY_BUDGET = 1 << 30
"""1 GiB: the most memory the Jacobian of the shared parameters may take at once (K = 40 tasks
on 6.7 M float32 parameters) before ``"auto"`` forms the Gramian layer by layer."""


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

        gramian_path: how a Gramian weighting (UPGrad, MGDA, ...) obtains ``G = J Jᵀ``:
            ``"full"`` materialises the K×P Jacobian J and writes ``wᵀJ`` from it; ``"layers"``
            forms G layer by layer from each layer's input activations and the K gradients of
            its output (K backward passes that compute no large weight gradient), and writes the
            update by one backward of ``Σₖ wₖLₖ``
            (:func:`~mtlkit.balancing.engine.layers.layered_gramian_backward`); it keeps of each
            fully connected or convolutional layer the smaller of its K weight gradients and its
            K output gradients, and of every other shared parameter (biases, normalisation
            layers, unknown modules) its K rows; the result is the same up to float rounding.
            ``"auto"`` (the default) takes ``"layers"`` when K·P·(bytes per entry) exceeds
            ``memory_budget``. Methods that read J itself (those that ``mtlkit methods`` lists
            as needing ``jacobian``) always materialise it.
        memory_budget: bytes of Jacobian allowed (default 1 GiB) before ``"auto"`` leaves the
            full path.

    A gradient aggregator holds one as ``balancer.engine`` (``None`` means ``Engine()``)::

        bal = create("upgrad", num_tasks=2)
        bal.engine = Engine(strategy="batched")
    """

    strategy: Strategy = "loop"
    gramian_path: GramianPath = "auto"
    memory_budget: int = DEFAULT_MEMORY_BUDGET

    def __post_init__(self) -> None:
        for option, value, choices in (
            ("strategy", self.strategy, STRATEGIES),
            ("gramian_path", self.gramian_path, GRAMIAN_PATHS),
        ):
            if value not in choices:
                listed = ", ".join(repr(c) for c in choices)
                raise ValueError(
                    f"{option} must be one of {listed}; got {value!r} (the default is "
                    f"{choices[0]!r})."
                )
        budget = self.memory_budget
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(
                f"memory_budget must be a positive number of bytes, got {budget!r} (the default "
                f"is {DEFAULT_MEMORY_BUDGET}, 1 GiB)."
            )

    def path_for(self, num_tasks: int, shared: Sequence[Tensor]) -> str:
        """The Gramian path (``"full"`` or ``"layers"``) a Gramian weighting takes for this
        Jacobian."""
        if self.gramian_path != "auto":
            return self.gramian_path
        size = num_tasks * sum(p.numel() * p.element_size() for p in shared)
        return "layers" if size > self.memory_budget else "full"


DEFAULT_ENGINE = Engine()
"""The engine of a balancer whose ``engine`` is ``None``."""
