"""DB-MTL (Lin et al., 2023): log-scaled losses, EMA gradients scaled to the largest norm."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import GradientAggregator
from mtlkit.balancing.methods._common import check_jacobian
from mtlkit.balancing.options import check_number, require_num_tasks
from mtlkit.balancing.registry import register


@register("db-mtl")
class DBMTL(GradientAggregator):
    """DB-MTL: balance loss scales by a log, gradient scales by normalising to the largest norm.

    Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Tsang, Kwok. "Dual-Balancing for Multi-Task
    Learning." arXiv:2308.12029, 2023 (Neural Networks, 2025).

    Loss-scale balancing: task k contributes the gradient of ``log L_k``, i.e. ``∇L_k / L_k``.
    Gradient-magnitude balancing: an EMA of those gradients, then every task's EMA gradient is
    rescaled to the largest norm among them:

        ĝ_k ← β_t ĝ_k + (1 − β_t) ∇L_k / L_k,      β_t = β / t^σ   (ĝ_k starts at 0, t = 1, 2, …)
        α_k = max_i ‖ĝ_i‖ / ‖ĝ_k‖,                 d = Σ_k α_k ĝ_k

    Choices: defaults β = 0.9 and σ = 0 (a constant β) follow LibMTL, the authors' own code; no
    bias correction of the zero-started EMA (as there), so the first updates are shorter. LibMTL
    takes ``log(L_k + 1e-8)`` and divides by ``‖ĝ_k‖ + 1e-8``; here ``∇L_k / L_k`` is exact, a
    non-positive loss (whose log is undefined) contributes a zero gradient that step, and a task
    whose EMA gradient is zero gets α_k = 0 — no absolute epsilons. Needs the whole Jacobian and
    the loss values. The EMA (K×P, shaped on the first step) and the step count travel in
    ``state_dict()``.

    Args:
        beta: EMA weight of the past, β in [0, 1).
        beta_sigma: decay exponent σ ≥ 0 of β_t = β / t^σ (0: constant β).
    """

    def __init__(
        self, num_tasks: int | None = None, *, beta: float = 0.9, beta_sigma: float = 0.0
    ) -> None:
        super().__init__(num_tasks=num_tasks)
        require_num_tasks("db-mtl", num_tasks, "an EMA of every task's gradient")
        self.beta = check_number("db-mtl", "beta", beta, low=0.0, high=1.0, high_inclusive=False)
        self.beta_sigma = check_number("db-mtl", "beta_sigma", beta_sigma, low=0.0)
        self._grad_ema: Tensor | None = None
        self._step = 0

    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = check_jacobian(jacobian)
        self._check_num_tasks(k)
        if losses is None:
            raise ValueError(
                "db-mtl needs the loss values (it balances log-losses): call "
                "aggregate(jacobian, losses) with the (K,) detached losses."
            )
        if losses.shape != (k,):
            raise ValueError(f"losses must have shape ({k},), got {tuple(losses.shape)}.")
        jacobian = jacobian.detach()
        losses = losses.detach().to(dtype=jacobian.dtype, device=jacobian.device)
        positive = losses > 0
        scale = torch.where(positive, 1 / torch.where(positive, losses, 1), 0)
        log_grads = jacobian * scale[:, None]  # ∇ log L_k = ∇L_k / L_k
        ema = self._grad_ema
        if ema is None:
            ema = torch.zeros_like(log_grads)
        elif ema.shape != log_grads.shape:
            raise ValueError(
                f"db-mtl's gradient EMA has shape {tuple(ema.shape)} but the Jacobian has "
                f"{tuple(log_grads.shape)}: the shared parameters changed; create a new db-mtl."
            )
        else:
            ema = ema.to(dtype=log_grads.dtype, device=log_grads.device)
        self._step += 1
        beta_t = self.beta / self._step**self.beta_sigma
        ema = torch.lerp(log_grads, ema, beta_t)  # β_t ĝ + (1 − β_t) g
        self._grad_ema = ema
        norms = ema.norm(dim=1)
        nonzero = norms > 0
        alpha = torch.where(nonzero, norms.max() / torch.where(nonzero, norms, 1), 0)
        return alpha @ ema

    def get_extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"step": self._step}
        if self._grad_ema is not None:
            state["grad_ema"] = self._grad_ema
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._step = int(state.get("step", 0))
        ema = state.get("grad_ema")
        self._grad_ema = None if ema is None else ema.detach().clone()
