"""MGDA and MGDA-UB: the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.options import check_choice
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.min_norm import min_norm_point

_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@register("mgda")
class MGDA(GramianWeighting):
    """MGDA: the exact min-norm point of the convex hull of the task gradients.

    Désidéri, "Multiple-gradient descent algorithm (MGDA) for multiobjective optimization",
    C. R. Math. 2012; Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
    NeurIPS 2018.

    With gᵢ the (normalised, see below) task gradients and G their Gramian::

        w* = argmin_{w ∈ Δ} ‖Σᵢ wᵢ gᵢ‖² = argmin_{w ∈ Δ} wᵀGw,      d = Σᵢ w*ᵢ gᵢ

    (Δ: the probability simplex). d is the min-norm element of the convex hull of the gradients;
    it is 0 exactly at Pareto-stationary points and otherwise a descent direction for every task
    (dᵀgᵢ ≥ ‖d‖² for all i). The QP is solved exactly (interior point, KKT residuals below 1e-12)
    rather than with Sener & Koltun's fixed budget of Frank-Wolfe steps; where the minimiser is not
    unique (linearly dependent gradients) the analytic centre of the optimal face is returned, so
    identical tasks get identical weights.

    Args:
        normalization: Sener & Koltun's gradient normalisation before the solve: ``"none"``
            (default), ``"l2"`` (gᵢ/‖gᵢ‖), ``"loss"`` (gᵢ/Lᵢ) or ``"loss+"`` (gᵢ/(Lᵢ‖gᵢ‖)). As in
            their reference code, the weights found for the normalised gradients are applied to
            the raw task gradients (LibMTL applies them to the normalised gradients instead, i.e.
            uses wᵢ/nᵢ). The loss-based ones need the loss values: they work through
            :meth:`aggregate` and ``weights_from_gramian(G, losses)``; losses must be positive.
    """

    def __init__(self, num_tasks: int | None = None, *, normalization: str = "none") -> None:
        super().__init__(num_tasks)
        self.normalization = check_choice(
            self.method_name, "normalization", normalization, _NORMALIZATIONS
        )

    def _normalizers(self, gramian: Tensor, losses: Tensor | None) -> Tensor | None:
        if self.normalization == "none":
            return None
        norms = gramian.diagonal().clamp(min=0.0).sqrt()
        if self.normalization == "l2":
            return norms
        if losses is None:
            raise ValueError(
                f"normalization={self.normalization!r} needs the loss values: call "
                "aggregate(jacobian, losses) or weights_from_gramian(gramian, losses)."
            )
        losses = losses.detach().to(dtype=gramian.dtype, device=gramian.device).reshape(-1)
        if losses.numel() != gramian.shape[-1]:
            raise ValueError(f"got {losses.numel()} losses for {gramian.shape[-1]} tasks.")
        if not bool((losses > 0).all()):
            raise ValueError(
                f"normalization={self.normalization!r} divides by the losses, which must be "
                "positive; use normalization='l2' or 'none' for losses that can be ≤ 0."
            )
        return losses if self.normalization == "loss" else losses * norms

    @torch.no_grad()
    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = gramian.shape[-1]
        self._check_num_tasks(k)
        norms = self._normalizers(gramian, losses)
        if norms is not None:
            # A zero normaliser comes with a zero gradient (or loss): its row stays 0.
            inv = torch.where(norms > 0, norms.reciprocal(), torch.zeros_like(norms))
            gramian = gramian * inv[:, None] * inv[None, :]
        return min_norm_point(gramian).to(gramian.dtype)


@register("mgda-ub")
class MGDAUB(MGDA):
    """MGDA-UB: MGDA on the gradients of the shared representation (Sener & Koltun's upper bound).

    Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018, §3.3.
    The weights w* = argmin_{w∈Δ} wᵀG_Z w are computed from the Gramian G_Z of the task gradients
    with respect to the shared representation Z (one backward pass through the heads only), and
    applied to the losses: the shared parameters receive Σᵢ w*ᵢ ∇θ Lᵢ. This minimises an upper
    bound of the MGDA objective, ‖Σ wᵢ∇θLᵢ‖ ≤ ‖∂Z/∂θ‖·‖Σ wᵢ∇Z Lᵢ‖. Same solver and options as
    ``mgda``; the engine supplies the representation's Gramian (``on_features = True``).
    """

    on_features = True
