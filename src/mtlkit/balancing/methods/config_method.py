"""ConFIG (Liu et al., 2024): the conflict-free direction equally aligned with every task."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.gramian import check_gramian, equal_projection_weights


@register("config")
class ConFIG(GramianWeighting):
    """ConFIG: the direction with equal positive cosine to every task gradient, length-projected.

    Liu, Chu, Thuerey. "ConFIG: Towards Conflict-free Training of Physics Informed Neural
    Networks." ICLR 2025, arXiv:2408.11104 (Conflict-Free Inverse Gradients, Eq. 2).

    With the normalisation 𝒰(g) = g/‖g‖ and U the K×P matrix of unit task gradients (rows u_k):

        g_u = 𝒰( U⁺ 1_K )                  (U⁺: pseudo-inverse, "[𝒰(g_1),…,𝒰(g_K)]^{-ᵀ}")
        d   = (Σ_k g_kᵀ g_u) · g_u         (length: sum of the projections of the raw g_k)

    When the gradients are independent, ``U g_u ∝ 1``: d has the same positive cosine with every
    task gradient, so it conflicts with none. Note the length uses the raw gradients g_k (the
    paper, its official code and torchjd), not the unit ones. Identical gradients g give d = K·g.

    On the Gramian G = J Jᵀ: with N = diag(‖g_k‖), U = N⁻¹J, ``U⁺1 = Uᵀ(UUᵀ)⁺1 = Jᵀβ`` for
    ``β = N⁻¹ C⁺ 1`` where ``C = N⁻¹GN⁻¹`` is the cosine matrix; then ``‖Jᵀβ‖² = βᵀGβ`` and
    ``Σ_k g_kᵀ g_u = 1ᵀGβ / ‖Jᵀβ‖``, so the weights are ``w = β · 1ᵀGβ / βᵀGβ``. This matches
    torchjd's ``ConFIG`` (which takes the pseudo-inverse of the K×P matrix) where U has full row
    rank; the pseudo-inverse of the K×K cosine matrix is taken in float64 with a relative
    tolerance of K·eps of the Gramian's dtype.
    Zero gradients get weight 0 (their unit vector is taken as 0, like the official code).
    The equal task weights (the paper's default) are used; no preference vector is offered.
    """

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        check_gramian(gramian)
        beta = equal_projection_weights(gramian)  # N⁻¹C⁺1
        work = gramian.detach().to(beta.dtype)
        g_beta = work @ beta
        squared_length = beta @ g_beta  # ‖Jᵀβ‖²
        ok = squared_length > 0
        weights = torch.where(ok, beta * (g_beta.sum() / torch.where(ok, squared_length, 1)), 0)
        return weights.to(gramian.dtype)
