"""Cheaper gradient balancing for many tasks: solve a Gramian weighting every n steps only.

A Gramian weighting (UPGrad, MGDA, CAGrad, Nash-MTL, ...) costs about ``F + K·B`` per step: one
trunk backward per task to get the Jacobian J. Its update is ``wᵀJ``; with the weights ``w`` of
the last solve kept for the next ``n − 1`` steps (as Nash-MTL's authors do with
``update_weights_every``), ``wᵀJ`` is one backward of ``Σₖ wₖ·∂Lₖ/∂z`` through the trunk, so that
those steps cost about ``F + B`` (:func:`~mtlkit.balancing.engine.backward.weighted_backward`)
and the mean step ``F + B + (K − 1)·B/n``. The price: between two solves the direction keeps the
old weights, so the method's guarantee (e.g. UPGrad's non-conflict) holds at the solving steps
only. ``create(name, weights_every=n)`` wraps a method in :class:`PeriodicWeights`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor, nn

from mtlkit.balancing.base import Balancer, GramianWeighting
from mtlkit.balancing.engine.backward import weighted_backward
from mtlkit.balancing.engine.strategy import DEFAULT_ENGINE
from mtlkit.balancing.options import check_int
from mtlkit.balancing.types import BalanceInfo

__all__ = ["PeriodicWeights"]


class PeriodicWeights(Balancer):
    """A Gramian weighting solved every ``every`` steps; the steps in between reuse its weights.

    Args:
        method: the Gramian weighting (not one on the shared representation, which already
            costs about ``F + B``).
        every: solve at steps 0, n, 2n, ... (n ≥ 1; 1 solves at every step).

    The method's own state and the reused weights and step count are in ``state_dict()``, so a
    resumed run solves at the same steps with the same weights.
    """

    def __init__(self, method: GramianWeighting, every: int) -> None:
        name = getattr(method, "method_name", type(method).__name__)
        if not isinstance(method, GramianWeighting) or method.on_features:
            raise ValueError(
                f"weights_every applies to the Gramian weightings (upgrad, mgda, cagrad, "
                f"nash-mtl, ...); {name!r} "
                + (
                    "already works on the shared representation (about F + B per step)."
                    if isinstance(method, GramianWeighting)
                    else "does not read its update off the Gramian."
                )
            )
        super().__init__(method.num_tasks)
        self.every = check_int(name, "weights_every", every, low=1)
        self.method = method
        self.needs = method.needs
        self.method_name = name
        self._steps = 0
        self._weights: Tensor | None = None

    def backward(
        self,
        losses: Sequence[Tensor],
        shared_params: Iterable[nn.Parameter],
        features: Tensor | Sequence[Tensor] | None = None,
    ) -> BalanceInfo:
        """The method's own backward at a solving step; ``wᵀJ`` with its last weights between."""
        self.method.replicas = self.replicas  # set by a data-parallel loop on this wrapper
        if self._weights is None or self._steps % self.every == 0:
            info = self.method.backward(losses, shared_params, features)
            self._weights = info.weights
        else:
            stacked = self._stack(losses)
            weights = self._weights.to(stacked.device)
            engine = self.method.engine or DEFAULT_ENGINE
            info = weighted_backward(
                weights, list(losses), stacked, shared_params, features, engine, self.replicas
            )
        self._steps += 1
        return info

    def epoch_end(self) -> None:
        self.method.epoch_end()

    def get_extra_state(self) -> dict[str, Any]:
        return {"steps": self._steps, "weights": self._weights}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._steps = int(state["steps"])
        self._weights = state["weights"]
