"""SDMGrad: MGDA's weights pulled towards a preference direction, by inner projected SGD."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.methods._common import read_extra_state, simplex_state
from mtlkit.balancing.options import check_int, check_number, check_weights
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.gramian import check_gramian, work_dtype
from mtlkit.balancing.solvers.simplex import project_simplex


@register("sdmgrad")
class SDMGrad(GramianWeighting):
    """SDMGrad: d = Jᵀ(w + λw̃)/(1 + λ), w from n_iter projected momentum-SGD steps on the simplex.

    Xiao, Ban & Ji, "Direction-oriented Multi-objective Learning: Simple and Provable Stochastic
    Algorithms", NeurIPS 2023 (Algorithm 1, eq. 9); torchjd's ``SDMGradWeighting``.

    SDMGrad looks for the direction closest to MGDA's that stays near the preferred direction
    Jᵀw̃ (w̃: the preference vector, uniform by default, i.e. the mean gradient)::

        min_{w ∈ Δ} ½‖Jᵀ(w + λw̃)‖²,       d = Jᵀ(w + λw̃) / (1 + λ)

    solved inexactly, as in the paper and the authors' code, by ``n_iter`` projected SGD steps
    with momentum (the velocity restarts at every training step) on A = G / s², with s the mean
    gradient norm (mean of √Gᵢᵢ), so that ``lr`` does not depend on the gradients' scale::

        v ← m·v + A(w + λw̃),    w ← Π_Δ(w − lr·v)

    w is warm-started from the previous step's (kept in ``state_dict()``; uniform at first).

    Differences from the paper and torchjd: they read ``A = J₁J₂ᵀ`` from two independent
    mini-batches (an unbiased estimate of the objective's gradient); mtlkit's engine
    differentiates one batch, so here A = JJᵀ/s² of the step's batch (the deterministic variant).
    torchjd divides by s² + 1e-8, which stops being scale-free once ‖g‖² nears 1e-8 late in
    training; here s² is only guarded against 0 (all-zero gradients give w̃). With the same
    Gramian the weights equal torchjd's up to that 1e-8.

    Args:
        lr: learning rate of the inner SGD (> 0; torchjd/LibMTL default 10).
        momentum: of the inner SGD, in [0, 1) (default 0.5).
        n_iter: inner steps per training step (≥ 1, default 20).
        lambda_: λ ≥ 0, the pull towards the preference direction (0.3, the authors' setting).
        pref_vector: w̃, one non-negative weight per task, rescaled to sum 1 (default uniform).
    """

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        lr: float = 10.0,
        momentum: float = 0.5,
        n_iter: int = 20,
        lambda_: float = 0.3,
        pref_vector: Sequence[float] | None = None,
    ) -> None:
        super().__init__(num_tasks)
        self.lr = check_number("sdmgrad", "lr", lr, low=0.0, low_inclusive=False)
        self.momentum = check_number(
            "sdmgrad", "momentum", momentum, low=0.0, high=1.0, high_inclusive=False
        )
        self.n_iter = check_int("sdmgrad", "n_iter", n_iter, low=1)
        self.lambda_ = check_number("sdmgrad", "lambda_", lambda_, low=0.0)
        self.pref: list[float] | None = None
        if pref_vector is not None:
            values = check_weights("sdmgrad", "pref_vector", pref_vector)
            if num_tasks is not None and len(values) != num_tasks:
                raise ValueError(
                    f"sdmgrad: pref_vector has {len(values)} entries but there are "
                    f"{num_tasks} tasks."
                )
            self.pref = [v / sum(values) for v in values]
        self.w: Tensor | None = None

    def _preference(self, gramian: Tensor) -> Tensor:
        k = gramian.shape[-1]
        if self.pref is None:
            return torch.full((k,), 1.0 / k, dtype=gramian.dtype, device=gramian.device)
        if len(self.pref) != k:
            raise ValueError(f"sdmgrad: pref_vector has {len(self.pref)} entries, got {k} tasks.")
        return torch.tensor(self.pref, dtype=gramian.dtype, device=gramian.device)

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = check_gramian(gramian)
        self._check_num_tasks(k)
        g = gramian.detach().to(work_dtype(gramian.device))
        target = self._preference(g)
        scale = g.diagonal().clamp(min=0.0).sqrt().mean() ** 2
        if not scale > torch.finfo(g.dtype).tiny:
            return target.to(gramian.dtype)
        a = g / scale
        w = simplex_state(self.w, g)
        velocity = torch.zeros_like(w)
        for _ in range(self.n_iter):
            velocity = self.momentum * velocity + a @ (w + self.lambda_ * target)
            w = project_simplex(w - self.lr * velocity)
        self.w = w
        return ((w + self.lambda_ * target) / (1.0 + self.lambda_)).to(gramian.dtype)

    def get_extra_state(self) -> dict[str, Any]:
        return {"w": self.w}

    def set_extra_state(self, state: Any) -> None:
        self.w = read_extra_state("sdmgrad", state, ("w",))["w"]
