"""GradNorm (Chen et al., 2018): task weights learnt to equalise the tasks' gradient norms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtlkit.balancing.base import LossWeighting
from mtlkit.balancing.methods._common import adam_step_, read_extra_state
from mtlkit.balancing.options import check_choice, check_number, require_num_tasks
from mtlkit.balancing.registry import register
from mtlkit.balancing.types import BalanceInfo

_MIN_WEIGHT = 1e-6
"""Floor applied to a task weight before renormalising, so that no weight reaches 0 or below."""


def last_shared_weight(shared: Sequence[Tensor]) -> Tensor:
    """GradNorm's W: the last shared parameter with ≥ 2 dims (the last linear/conv weight).

    Bias and normalisation vectors after it are skipped; if every shared parameter is 1-D, the
    last one is used.
    """
    for param in reversed(shared):
        if param.dim() >= 2:
            return param
    return shared[-1]


@register("gradnorm")
class GradNorm(LossWeighting):
    """GradNorm: Σ wₖLₖ with weights trained to equalise ‖∇_W wₖLₖ‖ at rates set by α (Chen 2018).

    Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
    Balancing in Deep Multitask Networks", ICML 2018 (Algorithm 1).

    At every step, with W the last shared layer's weight (the last shared parameter with at least
    two dimensions, see :func:`last_shared_weight`), ``Lₖ(0)`` the losses of the first step and
    the current weights ``w``:

    * ``Gₖ = ‖∇_W wₖLₖ‖₂ = wₖ‖∇_W Lₖ‖₂`` and ``Ḡ = meanₖ Gₖ``;
    * ``L̃ₖ = Lₖ/Lₖ(0)`` and the relative inverse training rate ``rₖ = L̃ₖ / meanⱼ L̃ⱼ``;
    * ``L_grad = Σₖ |Gₖ − Ḡ·rₖ^α|`` with the target ``Ḡ·rₖ^α`` held constant, whose gradient
      in w is ``∂L_grad/∂wₖ = sign(Gₖ − Ḡ·rₖ^α)·‖∇_W Lₖ‖``;
    * the model receives the gradient of ``Σₖ wₖLₖ`` with *this step's* weights; then the
      weights take one step of their own optimiser on ``∂L_grad/∂w`` and are renormalised so
      that ``Σₖ wₖ = K`` (after a floor of 1e-6 that keeps every weight positive).

    The weights start at 1. They are buffers, not parameters: they are trained by the method's
    own small optimiser (Adam by default; ``lr`` = 0.025, the learning rate that the Nash-MTL and
    FAMO code bases give method parameters — the paper does not fix a separate one), so the main
    optimiser never touches them. Weights, ``Lₖ(0)`` and the optimiser's moments all travel in
    ``state_dict()``.

    Cost: GradNorm reads the norms itself (its ``needs`` is ``losses``: the engine computes no
    per-task gradient for it), with one extra backward per task along the short path from the
    loss to W (the task's head and W, not the rest of the trunk), then one backward of Σ wₖLₖ.
    Under data parallelism (``replicas``) the norms are those of the replica-mean gradients and
    the losses their replica means, so every replica keeps the same weights.

    Args:
        alpha: α ≥ 0, the strength of the restoring force towards a common training rate
            (paper: 1.5 on NYUv2; 0 asks for equal gradient norms).
        lr: > 0, learning rate of the weights' own optimiser.
        optimizer: ``"adam"`` (default) or ``"sgd"``, the weights' own optimiser.
    """

    _OPTIMIZERS = ("adam", "sgd")

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        alpha: float = 1.5,
        lr: float = 0.025,
        optimizer: str = "adam",
    ) -> None:
        num_tasks = require_num_tasks("gradnorm", num_tasks)
        self.alpha = check_number("gradnorm", "alpha", alpha, low=0.0)
        self.lr = check_number("gradnorm", "lr", lr, low=0.0, low_inclusive=False)
        self.optimizer = check_choice("gradnorm", "optimizer", optimizer, self._OPTIMIZERS)
        super().__init__(num_tasks=num_tasks)
        self.register_buffer("weights", torch.ones(num_tasks))
        self.register_buffer("initial_losses", torch.ones(num_tasks))
        self.register_buffer("exp_avg", torch.zeros(num_tasks))
        self.register_buffer("exp_avg_sq", torch.zeros(num_tasks))
        self._updates = 0

    def combine(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """Σ wₖLₖ with the current weights, without updating them (:meth:`backward` updates)."""
        weights = self.weights.to(dtype=losses.dtype, copy=True)
        return (weights * losses).sum(), weights

    def backward(
        self,
        losses: Sequence[Tensor],
        shared_params: Iterable[nn.Parameter],
        features: Tensor | Sequence[Tensor] | None = None,
    ) -> BalanceInfo:
        stacked = self._stack(losses)
        shared = [p for p in shared_params if p.requires_grad]
        if not shared:
            raise ValueError(
                "gradnorm needs the shared parameters (it balances the gradient norms of the "
                "last shared layer): pass shared_params, e.g. model.shared_parameters()."
            )
        layer = last_shared_weight(shared)
        norms = self._grad_norms(losses, layer)
        info = self._backward_stacked(stacked)  # this step uses the current weights
        self.update_weights(stacked.detach(), norms)
        return info

    def _grad_norms(self, losses: Sequence[Tensor], layer: Tensor) -> Tensor:
        """The (K,) ‖∇_W Lₖ‖ (of the replica-mean gradients under data parallelism): autograd
        walks only the short path from each loss to W."""
        grads = []
        for loss in losses:
            (grad,) = torch.autograd.grad(loss, layer, retain_graph=True, allow_unused=True)
            grads.append(torch.zeros_like(layer) if grad is None else grad)
        stacked = torch.stack(grads).float()
        if self.replicas is not None:
            self.replicas.mean_(stacked)
        return torch.linalg.vector_norm(stacked.flatten(1), dim=1)

    @torch.no_grad()
    def update_weights(self, losses: Tensor, norms: Tensor) -> None:
        """One GradNorm update of the weights from the (K,) losses and ‖∇_W Lₖ‖ of this step."""
        losses = losses.to(self.weights)
        norms = norms.to(self.weights)
        tiny = torch.finfo(self.weights.dtype).tiny
        if self._updates == 0:  # the first update records Lₖ(0)
            self.initial_losses.copy_(losses)
        ratio = losses / self.initial_losses.clamp_min(tiny)
        rate = ratio / ratio.mean().clamp_min(tiny)
        grad_norms = self.weights * norms
        target = grad_norms.mean() * rate.pow(self.alpha)
        grad = torch.sign(grad_norms - target) * norms
        self._updates += 1
        if self.optimizer == "adam":
            adam_step_(self.weights, grad, self.exp_avg, self.exp_avg_sq, self._updates, lr=self.lr)
        else:
            self.weights.add_(grad, alpha=-self.lr)
        self.weights.clamp_(min=_MIN_WEIGHT)
        self.weights.mul_(self.num_tasks / self.weights.sum())

    def get_extra_state(self) -> dict[str, Any]:
        return {"updates": self._updates}

    def set_extra_state(self, state: Any) -> None:
        self._updates = int(read_extra_state("gradnorm", state, ("updates",))["updates"])
