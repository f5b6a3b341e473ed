"""The one interface between a training loop and every task-balancing method.

A *balancer* turns K task losses into gradients on the model's parameters. There are two families:

* :class:`LossWeighting` methods combine the K losses into one scalar (fixed weights, uncertainty
  weighting, DWA, ...) and back-propagate it once;
* :class:`GradientAggregator` methods look at the per-task gradients of the *shared* parameters (the
  K×P Jacobian, or just its K×K Gramian) and pick one update direction (MGDA, PCGrad, UPGrad, ...).
  Task-specific parameters always receive their own task's gradient.

A method declares what it needs (:class:`Need`), so that the engine never computes more than that.
Stateful methods keep their state in buffers or ``get_extra_state`` so that ``state_dict()`` holds
it and checkpoints resume it.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from mtlkit.balancing.engine import Engine


class Need(enum.IntEnum):
    """What a method must see to decide the update; ordered from cheapest to dearest.

    Compare by name or order (``method.needs >= Need.GRAMIAN``), not by value.
    """

    LOSSES = 0
    """The loss values (and the method's own state) only: one backward pass of one scalar."""
    GRAD_NORMS = 1
    """The K norms of the per-task gradients of (some of) the shared parameters, e.g. GradNorm's
    last shared layer, which it reads itself along the short path from each loss to that layer;
    :func:`mtlkit.balancing.engine.task_grad_norms` gives them for any parameter set."""
    GRAMIAN = 2
    """The K×K Gramian ``J Jᵀ`` of the per-task gradients of the shared parameters."""
    JACOBIAN = 3
    """The whole K×P Jacobian of the shared parameters."""


@dataclass
class BalanceInfo:
    """What a balancer did in one step, for logging.

    Attributes:
        weights: the (K,) task weights actually applied, detached; ``None`` where the method's
            update is not a weighted sum of the task gradients.
        extras: further scalars worth logging (for example a method's internal temperature).
    """

    weights: Tensor | None
    extras: dict[str, float] = field(default_factory=dict)


def stack_losses(losses: Sequence[Tensor]) -> Tensor:
    """Stack K scalar losses into a (K,) tensor, refusing anything that is not a scalar."""
    if len(losses) == 0:
        raise ValueError("losses is empty: pass one scalar loss per task.")
    for k, loss in enumerate(losses):
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(
                f"losses[{k}] must be a scalar tensor, got {shape}: reduce each task's loss "
                "to a scalar (e.g. .mean()) before balancing."
            )
    return torch.stack(list(losses))


class Balancer(nn.Module, ABC):
    """Base of every balancing method.

    Subclasses set ``needs`` and implement :meth:`backward`. A balancer is an ``nn.Module`` so that
    learnable weights (uncertainty weighting) reach the optimizer through ``parameters()`` and every
    piece of state travels in ``state_dict()``.
    """

    needs: Need = Need.LOSSES
    engine: Engine | None = None
    """How the per-task gradients are obtained (``None``: ``Engine()``, strategy ``"auto"``); set
    ``balancer.engine = Engine(strategy="loop")`` to force a strategy. Not part of the state."""

    def __init__(self, num_tasks: int | None = None) -> None:
        super().__init__()
        if num_tasks is not None and (not isinstance(num_tasks, int) or num_tasks < 1):
            raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}.")
        self.num_tasks = num_tasks

    def _check_num_tasks(self, k: int) -> None:
        if self.num_tasks is not None and k != self.num_tasks:
            raise ValueError(
                f"{type(self).__name__} was created for {self.num_tasks} tasks but got {k} losses."
            )

    def epoch_end(self) -> None:
        """Called by the training loop after every epoch (DWA, for one, works per epoch)."""

    @abstractmethod
    def backward(
        self,
        losses: Sequence[Tensor],
        shared_params: Iterable[nn.Parameter],
        features: Tensor | Sequence[Tensor] | None = None,
    ) -> BalanceInfo:
        """Fill ``.grad`` of every parameter that the losses depend on.

        Args:
            losses: K scalar losses, one per task, still attached to the graph.
            shared_params: the parameters all tasks share (the trunk).
            features: the shared representation the task heads read (needed by methods that work
                on the representation, e.g. ``mgda-ub``; lets the engine find task parameters).

        Returns:
            What was applied, for logging.
        """


class LossWeighting(Balancer):
    """A method that turns the K losses into one scalar and back-propagates it once."""

    needs = Need.LOSSES

    @abstractmethod
    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """Combine the stacked (K,) losses (attached to the graph) into one scalar.

        Returns:
            ``(total, weights)``: the scalar to back-propagate and the (K,) detached weights that
            it applies to the losses.
        """

    def backward(
        self,
        losses: Sequence[Tensor],
        shared_params: Iterable[nn.Parameter],
        features: Tensor | Sequence[Tensor] | None = None,
    ) -> BalanceInfo:
        stacked = stack_losses(losses)
        self._check_num_tasks(stacked.numel())
        total, weights = self.combine(stacked)
        total.backward()
        return BalanceInfo(weights=weights.detach())


class GradientAggregator(Balancer):
    """A method that maps the K×P Jacobian of the shared parameters to one update direction.

    Subclasses implement :meth:`aggregate`; methods whose result depends on the Jacobian only
    through its Gramian should derive from :class:`GramianWeighting` instead, which lets the
    engine skip materialising more than it must.
    """

    needs = Need.JACOBIAN
    on_features: bool = False
    """When true, the engine reads the per-task gradients of the shared *representation*
    (``features``) instead of the shared parameters, and applies the weights to the losses
    (Sener & Koltun's MGDA-UB shortcut): weights from the Gramian of the K gradients ``∂Lₖ/∂z``,
    then one backward of ``Σₖ wₖLₖ`` through the whole network (heads included). Only for
    :class:`GramianWeighting` methods; ``backward`` then requires ``features``."""
    keeps_common_direction: bool = True
    """Whether K identical task gradients ``g`` give back ``c·g`` with ``c ≥ 0`` (checked by the
    contract tests for every registered aggregator). A method that provably does not (e.g. one
    that drops coordinates at random) sets it to ``False`` and says why in its docstring."""

    @abstractmethod
    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        """Map a (K, P) Jacobian (row k: task k's gradient) to a (P,) update direction.

        ``losses`` holds the (K,) detached loss values for the few methods that read them
        (e.g. DB-MTL's log-scaling); the others ignore it.
        """

    def backward(
        self,
        losses: Sequence[Tensor],
        shared_params: Iterable[nn.Parameter],
        features: Tensor | Sequence[Tensor] | None = None,
    ) -> BalanceInfo:
        from mtlkit.balancing.engine import aggregate_backward

        return aggregate_backward(self, losses, shared_params, features)


class GramianWeighting(GradientAggregator):
    """A gradient aggregator whose direction is ``wᵀJ`` with weights ``w`` read off the Gramian."""

    needs = Need.GRAMIAN

    @abstractmethod
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        """Map the (K, K) Gramian ``J Jᵀ`` to the (K,) weights of the task gradients.

        ``losses`` holds the (K,) detached loss values for the methods that read them (MGDA's
        loss-based normalisations); the others ignore it.
        """

    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        return self.weights_from_gramian(jacobian @ jacobian.T, losses) @ jacobian
