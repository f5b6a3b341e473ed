"""The one interface between a training loop and every task-balancing method.

A *balancer* turns K task losses into gradients on the model's parameters. There are two families:

* :class:`LossWeighting` methods combine the K losses into one scalar (fixed weights, uncertainty
  weighting, DWA, ...) and back-propagate it once;
* :class:`GradientAggregator` methods look at the per-task gradients of the *shared* parameters (the
  K×P Jacobian, or just its K×K Gramian) and pick one update direction (MGDA, PCGrad, UPGrad, ...).
  Task-specific parameters always receive their own task's gradient.

A method declares what it reads (``needs``, a :class:`~mtlkit.balancing.types.Need`), which says
what a step costs: a loss weighting one backward pass; a gradient aggregator the whole Jacobian of
the shared parameters, which the engine materialises whether the method reads J or only its
Gramian (it applies ``wᵀJ`` from it), except on the shared representation (``on_features``).
Stateful methods keep their state in buffers or ``get_extra_state`` so that ``state_dict()`` holds
it and checkpoints resume it.

Under data parallelism the training loop sets ``balancer.replicas``
(:class:`~mtlkit.balancing.replicas.Replicas`): every method then reads the replica means of the
losses, gradient methods the replica-mean Jacobian (or, on the shared representation, the Gramian
of the whole batch's representation gradients), so every replica makes the same decision and keeps
the same state; the gradients that the engine writes are replica means too. A loss weighting
back-propagates one scalar, whose gradients the data-parallel wrapper (DDP) averages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from mtlkit.balancing.engine.accumulate import wide_gramian
from mtlkit.balancing.engine.backward import (
    gramian_backward,
    jacobian_backward,
    representation_backward,
)
from mtlkit.balancing.engine.gradients import check_shared
from mtlkit.balancing.engine.layers import layered_gramian_backward
from mtlkit.balancing.engine.strategy import DEFAULT_ENGINE, Engine
from mtlkit.balancing.replicas import Replicas, replica_mean_values
from mtlkit.balancing.types import BalanceInfo, Need, stack_losses

__all__ = ["Balancer", "GradientAggregator", "GramianWeighting", "LossWeighting"]

_GRAMIAN_PATHS = {
    "full": gramian_backward,
    "layers": layered_gramian_backward,
}
"""The backward of a Gramian weighting on each path :meth:`Engine.path_for` names."""


class Balancer(nn.Module, ABC):
    """Base of every balancing method.

    Subclasses set ``needs`` and implement :meth:`backward`. A balancer is an ``nn.Module`` so that
    learnable weights (uncertainty weighting) reach the optimizer through ``parameters()`` and every
    piece of state travels in ``state_dict()``.
    """

    needs: Need = Need.LOSSES
    replicas: Replicas | None = None
    """The data-parallel replicas this balancer's steps are part of (``None``: one process); set
    by a data-parallel training loop. Not part of the state."""

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

    def _stack(self, losses: Sequence[Tensor]) -> Tensor:
        """The (K,) stack of the scalar ``losses``, checked against ``num_tasks``, with the values
        of their means over :attr:`replicas` (see
        :func:`~mtlkit.balancing.replicas.replica_mean_values`)."""
        stacked = stack_losses(losses)
        self._check_num_tasks(stacked.numel())
        return replica_mean_values(stacked, self.replicas)

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
        return self._backward_stacked(self._stack(losses))

    def _backward_stacked(self, stacked: Tensor) -> BalanceInfo:
        """Back-propagate :meth:`combine` of the (K,) stacked losses."""
        total, weights = self.combine(stacked)
        total.backward()
        return BalanceInfo(weights=weights.detach())


class GradientAggregator(Balancer):
    """A method that maps the K×P Jacobian of the shared parameters to one update direction.

    Subclasses implement :meth:`aggregate`; methods whose result depends on the Jacobian only
    through its Gramian derive from :class:`GramianWeighting` instead, whose update is written
    as ``wᵀJ`` straight into ``.grad``.
    """

    needs = Need.JACOBIAN
    engine: Engine | None = None
    """How the per-task gradients are obtained (``None``: ``Engine()``, strategy ``"loop"``); set
    ``balancer.engine = Engine(strategy="batched")`` to use another strategy. Not part of the
    state."""
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
        """Shared parameters get :meth:`aggregate` of their Jacobian; every other parameter the
        losses depend on gets the gradient of ``Σₖ Lₖ`` (its own task's, under hard sharing).
        Gradients add to an existing ``.grad``; ``info.weights`` is ``None``."""
        stacked = self._stack(losses)
        engine = self.engine or DEFAULT_ENGINE
        return jacobian_backward(
            self, list(losses), stacked, shared_params, features, engine, self.replicas
        )


class GramianWeighting(GradientAggregator):
    """A gradient aggregator whose direction is ``wᵀJ`` with weights ``w`` read off the Gramian."""

    needs = Need.GRAMIAN
    on_features: bool = False
    """When true, the engine reads the per-task gradients of the shared *representation*
    (``features``) instead of the shared parameters, and applies the weights to the losses
    (Sener & Koltun's MGDA-UB shortcut): weights from the Gramian of the K gradients ``∂Lₖ/∂z``,
    then one backward of ``Σₖ wₖLₖ`` through the whole network (heads included); ``backward``
    then requires ``features``."""

    @abstractmethod
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        """Map the (K, K) Gramian ``J Jᵀ`` to the (K,) weights of the task gradients.

        ``losses`` holds the (K,) detached loss values for the methods that read them (MGDA's
        loss-based normalisations); the others ignore it.
        """

    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        """``wᵀJ`` with ``w`` read off ``J Jᵀ``, both products in float64 as in the engine."""
        weights = self.weights_from_gramian(wide_gramian(jacobian), losses)
        wide = torch.promote_types(weights.dtype, jacobian.dtype)
        return (weights.to(wide) @ jacobian.to(wide)).to(jacobian.dtype)

    def backward(
        self,
        losses: Sequence[Tensor],
        shared_params: Iterable[nn.Parameter],
        features: Tensor | Sequence[Tensor] | None = None,
    ) -> BalanceInfo:
        """Shared parameters get ``wᵀJ``, ``w`` read off ``G = J Jᵀ`` (or, with ``on_features``,
        off the Gramian of ``∂Lₖ/∂z``); the applied weights are returned in ``info.weights``.
        Where the engine does not materialise J
        (:class:`~mtlkit.balancing.engine.strategy.Engine`'s ``gramian_path`` and
        ``memory_budget``), G is formed layer by layer and ``wᵀJ`` written by one more backward
        pass."""
        stacked = self._stack(losses)
        if self.on_features:
            return representation_backward(
                self, list(losses), stacked, shared_params, features, self.replicas
            )
        engine = self.engine or DEFAULT_ENGINE
        shared = check_shared(shared_params)
        path = _GRAMIAN_PATHS[engine.path_for(len(losses), shared)]
        return path(self, list(losses), stacked, shared, features, engine, self.replicas)
