"""Nash-MTL: the Nash bargaining solution between the tasks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.options import check_int, check_number
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.fair import alpha_fair_weights


@register("nash-mtl")
class NashMTL(GramianWeighting):
    """Nash-MTL: weights of the Nash bargaining solution, Gα = 1/α, with norm clipping.

    Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task Learning as a
    Bargaining Game", ICML 2022 (Algorithm 1).

    The update d = Σᵢ αᵢgᵢ maximises Σᵢ log(gᵢᵀd) over a ball; its weights solve::

        G α = 1/α   (element-wise),   α > 0

    so that αᵢ·gᵢᵀd = 1 for every task and ‖d‖² = αᵀGα = K. The paper approximates this with
    up to 20 convex-concave iterations of cvxpy problems; here it is solved to 1e-12 by Newton's
    method on the strictly convex ½αᵀGα − Σᵢ log αᵢ, warm-started from the previous weights, with
    a relative ridge of 1e-14 (a zero gradient gets a large finite weight, which does not change
    d). Then, as the official code clips the shared parameters' gradient norm to ``max_norm``, α
    is scaled so that ‖d‖ ≤ max_norm (task-specific parameters keep their own gradients).

    The step size is that of the official code (``WeightMethods.NashMTL``): it divides GᵀG by
    its Frobenius norm N before solving, but only for the solver's conditioning, since its
    constraints ``−log(αᵢ·N) − log((Ĝα)ᵢ) ≤ 0`` multiply N back: its fixed point is
    ``αᵢ(Gα)ᵢ = 1`` on the unnormalised G, i.e. α = α̂/√N with Ĝα̂ = 1/α̂, the solution here. So
    ‖d‖ = √K at every gradient scale and, after clipping, min(√K, max_norm): with the default
    max_norm = 1 every update of the shared parameters has norm 1, however small the gradients
    (the official solver returns a shorter step only where ECOS fails, at tiny scales, and it
    falls back to its previous α).

    State (in ``state_dict()``): the step counter and the last solved weights.

    Args:
        update_weights_every: solve every this many steps and reuse the weights in between
            (still clipped against the current G); default 1.
        optim_niter: most solver iterations per solve (default 20; Newton converges in 5 to 15).
        max_norm: bound on ‖d‖ (default 1.0, the paper's); 0 disables the clipping.
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        update_weights_every: int = 1,
        optim_niter: int = 20,
        max_norm: float = 1.0,
    ) -> None:
        super().__init__(num_tasks)
        self.update_weights_every = check_int(
            "nash-mtl", "update_weights_every", update_weights_every, low=1
        )
        self.optim_niter = check_int("nash-mtl", "optim_niter", optim_niter, low=1)
        self.max_norm = check_number("nash-mtl", "max_norm", max_norm, low=0.0)  # 0: no clipping
        self.step = 0
        self.alpha: Tensor | None = None

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = gramian.shape[-1]
        self._check_num_tasks(k)
        previous = self.alpha if self.alpha is not None and self.alpha.numel() == k else None
        if previous is None or self.step % self.update_weights_every == 0:
            alpha = alpha_fair_weights(gramian, 1.0, init=previous, max_iter=self.optim_niter)
            self.alpha = alpha
        else:
            alpha = previous
        self.step += 1
        alpha = alpha.to(device=gramian.device)
        if self.max_norm > 0:
            g = gramian.detach().to(alpha.dtype)
            norm = (alpha @ g @ alpha).clamp(min=0.0).sqrt()
            alpha = alpha * (self.max_norm / norm).clamp(max=1.0)
        return alpha.to(gramian.dtype)

    def reset(self) -> None:
        """Forget the step counter and the previous weights."""
        self.step = 0
        self.alpha = None

    def get_extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"step": self.step}
        if self.alpha is not None:
            state["alpha"] = self.alpha
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.alpha = state.get("alpha")
