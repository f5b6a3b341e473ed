"""UPGrad and DualProj: projections onto the dual cone of the task gradients (never conflict)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.options import check_number
from mtlkit.balancing.qp import dual_cone_weights, normalize_gramian
from mtlkit.balancing.registry import register


class _DualConeWeighting(GramianWeighting):
    """Shared options and Gramian regularisation of UPGrad and DualProj."""

    def __init__(
        self,
        num_tasks: int | None = None,
        *,
        pref_vector: Sequence[float] | None = None,
        norm_eps: float = 0.0,
        reg_eps: float = 1e-4,
    ) -> None:
        super().__init__(num_tasks)
        self.norm_eps = check_number(self.method_name, "norm_eps", norm_eps, low=0.0)
        self.reg_eps = check_number(self.method_name, "reg_eps", reg_eps, low=0.0)
        pref = None
        if pref_vector is not None:
            values = [float(v) for v in pref_vector]
            if not values or any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
                raise ValueError(
                    "pref_vector must hold one finite weight ≥ 0 per task, not all 0; "
                    f"got {list(pref_vector)!r}."
                )
            if num_tasks is not None and len(values) != num_tasks:
                raise ValueError(
                    f"pref_vector has {len(values)} entries but there are {num_tasks} tasks."
                )
            pref = torch.tensor(values, dtype=torch.float64)
        self.register_buffer("pref_vector", pref, persistent=False)

    def _pref(self, k: int, like: Tensor) -> Tensor:
        if self.pref_vector is None:
            return torch.full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
        if self.pref_vector.numel() != k:
            raise ValueError(
                f"pref_vector has {self.pref_vector.numel()} entries but got {k} tasks."
            )
        return self.pref_vector.to(dtype=like.dtype, device=like.device)

    def _regularized(self, gramian: Tensor) -> Tensor:
        """``G / trace(G) + reg_eps·I``, with G treated as 0 where ``trace(G) ≤ norm_eps``."""
        k = gramian.shape[-1]
        self._check_num_tasks(k)
        unit, _ = normalize_gramian(gramian)  # PSD(G) / (trace / K)
        trace = gramian.detach().diagonal().sum().to(unit.dtype)
        keep = (trace > self.norm_eps) & (trace > 0)
        g = torch.where(keep, unit / k, torch.zeros_like(unit))
        return g + self.reg_eps * torch.eye(k, dtype=g.dtype, device=g.device)


@register("upgrad")
class UPGrad(_DualConeWeighting):
    """UPGrad: the mean of the task gradients each projected onto the dual cone of all of them.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv:2406.16232);
    torchjd's ``UPGrad``.

    With π_J the projection onto the dual cone {x : Jx ≥ 0} of the rows of J, and p the
    preference vector (uniform by default)::

        d = Σᵢ pᵢ π_J(gᵢ) = (Σᵢ pᵢ vᵢ)ᵀ J,   vᵢ = argmin_{v ≥ eᵢ} vᵀGv   (Prop. 1)

    so d never conflicts with any task (Jd ≥ 0), and equals g when every row equals g. The K box-
    constrained QPs are solved together, by one batched interior-point run. G is first scaled as
    in the paper's implementation: G ← G / trace(G) + reg_eps·I (the ridge makes every vᵢ unique;
    it allows conflicts of at most reg_eps·trace(G)·wᵢ on task i, reg_eps = 0 removes them).

    Args:
        pref_vector: p, one non-negative weight per task (default 1/K each).
        norm_eps: G is treated as 0 (d = pᵀJ) where trace(G) = ‖J‖²_F ≤ norm_eps. The default 0
            only catches all-zero gradients; torchjd uses 1e-4, which silently turns UPGrad into
            the weighted mean whenever ‖J‖²_F < 1e-4, as happens late in training.
        reg_eps: the ridge above (torchjd's default, 1e-4).
    """

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        g = self._regularized(gramian)
        k = g.shape[-1]
        pref = self._pref(k, g)
        if k == 1:
            return pref.to(gramian.dtype)
        # Positive homogeneity: v(pᵢeᵢ) = pᵢ·v(eᵢ); solve the K problems v ≥ pᵢeᵢ at once.
        v = dual_cone_weights(g, torch.diag(pref))
        return v.sum(0).to(gramian.dtype)


@register("dualproj")
class DualProj(_DualConeWeighting):
    """DualProj: the mean gradient projected onto the dual cone of the task gradients.

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 (arXiv:2406.16232),
    after Lopez-Paz & Ranzato's GEM (NeurIPS 2017, eq. 11); torchjd's ``DualProj``::

        d = π_J(Jᵀp) = vᵀJ,   v = argmin_{v ≥ p} vᵀGv

    with p the preference vector (uniform by default): d never conflicts with any task (Jd ≥ 0).
    G is scaled and regularised as in ``upgrad`` (G / trace(G) + reg_eps·I).

    Args:
        pref_vector: p, one non-negative weight per task (default 1/K each).
        norm_eps: G is treated as 0 (d = pᵀJ) where ‖J‖²_F ≤ norm_eps (default 0; torchjd 1e-4).
        reg_eps: ridge added to the normalised G (torchjd's default, 1e-4).
    """

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        g = self._regularized(gramian)
        pref = self._pref(g.shape[-1], g)
        return dual_cone_weights(g, pref).to(gramian.dtype)
