"""UPGrad and DualProj: projections onto the dual cone of the task gradients (never conflict)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.options import check_number, check_weights
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.dual_cone import dual_cone_weights
from mtlkit.balancing.solvers.gramian import work_dtype


class _DualConeWeighting(GramianWeighting):
    """Shared options and the regularised dual-cone solve of UPGrad and DualProj."""

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        pref_vector: Sequence[float] | None = None,
        norm_eps: float = 0.0,
        reg_eps: float = 0.0,
    ) -> None:
        super().__init__(num_tasks)
        self.norm_eps = check_number(self.method_name, "norm_eps", norm_eps, low=0.0)
        self.reg_eps = check_number(self.method_name, "reg_eps", reg_eps, low=0.0)
        pref = None
        if pref_vector is not None:
            values = check_weights(self.method_name, "pref_vector", pref_vector)
            if num_tasks is not None and len(values) != num_tasks:
                raise ValueError(
                    f"pref_vector has {len(values)} entries but there are {num_tasks} tasks."
                )
            pref = torch.tensor(values, dtype=torch.float64)
        self.register_buffer("pref_vector", pref, persistent=False)

    def _pref(self, gramian: Tensor) -> Tensor:
        """p in the working precision, on the Gramian's device."""
        k = gramian.shape[-1]
        dtype, device = work_dtype(gramian.device), gramian.device
        if self.pref_vector is None:
            return torch.full((k,), 1.0 / k, dtype=dtype, device=device)
        if self.pref_vector.numel() != k:
            raise ValueError(
                f"pref_vector has {self.pref_vector.numel()} entries but got {k} tasks."
            )
        return self.pref_vector.to(dtype=dtype, device=device)

    def _solve(self, gramian: Tensor, lower: Tensor) -> Tensor:
        """``dual_cone_weights`` on G with this method's ridge; ``lower`` where G is (nearly) 0."""
        self._check_num_tasks(gramian.shape[-1])
        trace = gramian.detach().diagonal().sum()
        keep = (trace > self.norm_eps) & (trace > 0)
        v = dual_cone_weights(gramian, lower, ridge=self.reg_eps)
        return torch.where(keep, v, lower).to(gramian.dtype)


@register("upgrad")
class UPGrad(_DualConeWeighting):
    """UPGrad: the mean of the task gradients each projected onto the dual cone of all of them.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv:2406.16232);
    torchjd's ``UPGrad``.

    With π_J the projection onto the dual cone {x : Jx ≥ 0} of the rows of J, and p the
    preference vector (uniform by default)::

        d = Σᵢ pᵢ π_J(gᵢ) = (Σᵢ pᵢ vᵢ)ᵀ J,   vᵢ = argmin_{v ≥ eᵢ} vᵀGv   (Prop. 1)

    so d never conflicts with any task (Jd ≥ 0), and equals g when every row equals g. The K box-
    constrained QPs are solved together, by one batched interior-point run in float64, on the
    cosine matrix N⁻¹GN⁻¹ (N: the gradient norms; see ``solvers.dual_cone.dual_cone_weights``):
    every task's constraint is resolved in its own scale, so the promise holds whatever the spread
    of the gradient norms — measured min cos(gₖ, d) ≥ −1e-7 on float32 Jacobians whose norms
    span 10⁴ (tests/test_balancing_guarantees.py), where the paper's and torchjd's ridge
    (G / trace(G) + 1e-4·I, relative to the *largest* gradients) gave −0.38.

    Args:
        pref_vector: p, one non-negative weight per task (default 1/K each).
        norm_eps: G is treated as 0 (d = pᵀJ) where trace(G) = ‖J‖²_F ≤ norm_eps. The default 0
            only catches all-zero gradients; torchjd uses 1e-4, which silently turns UPGrad into
            the weighted mean whenever ‖J‖²_F < 1e-4, as happens late in training.
        reg_eps: a ridge on the cosine matrix, i.e. G + reg_eps·diag(G) (default 0, the exact
            projection). It bounds the weights and allows on task i a conflict of at most
            gᵢᵀd ≥ −reg_eps·‖gᵢ‖²·wᵢ, relative to that task's own norm. torchjd's reg_eps = 1e-4
            is relative to trace(G) instead.
    """

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        pref = self._pref(gramian)
        if gramian.shape[-1] == 1:
            return pref.to(gramian.dtype)
        return self._solve(gramian, torch.diag(pref)).sum(0)  # the K problems v ≥ pᵢeᵢ at once


@register("dualproj")
class DualProj(_DualConeWeighting):
    """DualProj: the mean gradient projected onto the dual cone of the task gradients.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv:2406.16232),
    after Lopez-Paz & Ranzato's GEM (NeurIPS 2017, eq. 11); torchjd's ``DualProj``::

        d = π_J(Jᵀp) = vᵀJ,   v = argmin_{v ≥ p} vᵀGv

    with p the preference vector (uniform by default): d never conflicts with any task (Jd ≥ 0).
    Solved as ``upgrad``'s problems are (float64, cosine coordinates, no ridge by default).

    Args:
        pref_vector: p, one non-negative weight per task (default 1/K each).
        norm_eps: G is treated as 0 (d = pᵀJ) where ‖J‖²_F ≤ norm_eps (default 0; torchjd 1e-4).
        reg_eps: ridge on the cosine matrix, as in ``upgrad`` (default 0; torchjd's 1e-4 is
            relative to trace(G)).
    """

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        return self._solve(gramian, self._pref(gramian))
