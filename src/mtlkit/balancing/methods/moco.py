"""MoCo: MGDA with tracked (bias-corrected) task gradients and a stochastic λ update."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import GradientAggregator
from mtlkit.balancing.options import check_choice, check_number
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.simplex import project_simplex

_NORMALIZATIONS = ("none", "loss")
_LAMBDA_UPDATES = ("projection", "softmax")


@register("moco")
class MoCo(GradientAggregator):
    """MoCo: tracked task gradients and a projected-gradient λ on the simplex (stochastic MGDA).

    Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, "Mitigating Gradient Bias in
    Multi-objective Learning: A Provably Convergent Approach", ICLR 2023 (Algorithm 1).

    At step k = 1, 2, ..., with hᵢ the task gradients (normalised, see below), Y the K×P matrix
    of tracked gradients (0 at the start) and λ ∈ Δ (uniform at the start)::

        Y ← Y − βₖ (Y − H),                    βₖ = β / k^β_sigma
        λ ← Π_Δ(λ − γₖ (Y Yᵀ + ρ I) λ),         γₖ = γ / k^γ_sigma
        d = Yᵀλ

    Y removes the bias that stochastic gradients give MGDA's weights; λ takes one projected-
    gradient step of min_λ∈Δ ½‖Yᵀλ‖² + ½ρ‖λ‖² per training step. The defaults are those of the
    authors' code (as shipped in LibMTL): β = 0.5, β_sigma = 0.5, γ = 0.1, γ_sigma = 0.5, ρ = 0,
    with its gradient normalisation hᵢ = Lᵢ·gᵢ/‖gᵢ‖, which makes γ independent of the gradients'
    scale; that code replaces the projection Π_Δ by a softmax (``lambda_update="softmax"``).
    Needs the whole Jacobian (Y is K×P). State (in ``state_dict()``): k, Y and λ.

    Args:
        beta, beta_sigma: step size of the tracking, βₖ = β/k^β_sigma, β in (0, 1], β_sigma ≥ 0.
        gamma, gamma_sigma: step size of λ, γₖ = γ/k^γ_sigma, γ > 0, γ_sigma ≥ 0.
        rho: ridge ρ ≥ 0 of λ's objective.
        normalization: ``"loss"`` (default, hᵢ = Lᵢgᵢ/‖gᵢ‖; needs the losses) or ``"none"``
            (hᵢ = gᵢ, the algorithm as written in the paper).
        lambda_update: ``"projection"`` (default, the paper's Π_Δ) or ``"softmax"``
            (λ ← softmax(λ − γₖ(YYᵀ + ρI)λ), the authors' code and LibMTL).
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        beta: float = 0.5,
        beta_sigma: float = 0.5,
        gamma: float = 0.1,
        gamma_sigma: float = 0.5,
        rho: float = 0.0,
        normalization: str = "loss",
        lambda_update: str = "projection",
    ) -> None:
        super().__init__(num_tasks)
        self.beta = check_number("moco", "beta", beta, low=0.0, high=1.0, low_inclusive=False)
        self.beta_sigma = check_number("moco", "beta_sigma", beta_sigma, low=0.0)
        self.gamma = check_number("moco", "gamma", gamma, low=0.0, low_inclusive=False)
        self.gamma_sigma = check_number("moco", "gamma_sigma", gamma_sigma, low=0.0)
        self.rho = check_number("moco", "rho", rho, low=0.0)
        self.normalization = check_choice("moco", "normalization", normalization, _NORMALIZATIONS)
        self.lambda_update = check_choice("moco", "lambda_update", lambda_update, _LAMBDA_UPDATES)
        self.step = 0
        self.y: Tensor | None = None
        self.lambd: Tensor | None = None

    @torch.no_grad()
    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        if jacobian.dim() != 2:
            raise ValueError(f"expected a (K, P) Jacobian, got shape {tuple(jacobian.shape)}.")
        k, p = jacobian.shape
        self._check_num_tasks(k)
        h = jacobian.detach()
        if self.normalization == "loss":
            if losses is None:
                raise ValueError(
                    "moco with normalization='loss' needs the loss values: call "
                    "aggregate(jacobian, losses), or create it with normalization='none'."
                )
            losses = losses.detach().to(dtype=h.dtype, device=h.device).reshape(-1)
            if losses.numel() != k:
                raise ValueError(f"got {losses.numel()} losses for {k} tasks.")
            norms = h.norm(dim=1)
            scale = torch.where(norms > 0, losses / norms.clamp(min=torch.finfo(h.dtype).tiny), 0)
            h = h * scale[:, None]
        if self.y is None or self.y.shape != (k, p):
            self.step = 0
            self.y = torch.zeros_like(h)
            self.lambd = torch.full((k,), 1.0 / k, dtype=h.dtype, device=h.device)
        y = self.y.to(dtype=h.dtype, device=h.device)
        lambd = self.lambd.to(dtype=h.dtype, device=h.device)
        self.step += 1
        beta_k = self.beta / self.step**self.beta_sigma
        gamma_k = self.gamma / self.step**self.gamma_sigma
        y = y - beta_k * (y - h)
        grad = y @ (y.T @ lambd) + self.rho * lambd  # (YYᵀ + ρI)λ
        lambd = lambd - gamma_k * grad
        if self.lambda_update == "projection":
            lambd = project_simplex(lambd)
        else:
            lambd = torch.softmax(lambd, dim=-1)
        self.y, self.lambd = y, lambd
        return lambd @ y

    def reset(self) -> None:
        """Forget the tracked gradients, λ and the step counter."""
        self.step = 0
        self.y = None
        self.lambd = None

    def get_extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"step": self.step}
        if self.y is not None:
            state["y"] = self.y
            state["lambd"] = self.lambd
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.y = state.get("y")
        self.lambd = state.get("lambd")
