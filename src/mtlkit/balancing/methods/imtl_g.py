"""IMTL-G (Liu et al., 2021): the update with equal projections onto every unit task gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.gramian import check_gramian, equal_projection_weights


@register("imtl-g")
class IMTLG(GramianWeighting):
    """IMTL-G: weights summing to 1 whose update projects equally onto every unit task gradient.

    Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang. "Towards Impartial Multi-task Learning."
    ICLR 2021 (Section 3.2, gradient balance).

    Find ``d = Σ_k α_k g_k`` with ``Σ_k α_k = 1`` and ``dᵀu_1 = dᵀu_k`` for all k, where
    ``u_k = g_k/‖g_k‖``. The paper's closed form, with rows ``D_k = g_1 − g_k`` and
    ``U_k = u_1 − u_k`` (k = 2..K):

        α_{2:K} = g_1 Uᵀ (D Uᵀ)⁻¹,      α_1 = 1 − Σ_{k≥2} α_k.

    On the Gramian the same conditions read ``G α = c n`` (n_k = ‖g_k‖ = √G_kk) and ``1ᵀα = 1``,
    so ``α = G⁻¹n / (1ᵀG⁻¹n)`` — the same α whenever G is invertible (checked against the
    closed form in the tests). It is computed as ``G⁻¹n = N⁻¹C⁻¹1`` on the cosine matrix C in
    float64, so that gradient norms 10⁴ apart do not ruin the conditioning (a float32 solve on G
    leaves projections unequal by 69 % there; this one by ~1e-7). A pseudo-inverse serves singular
    C (identical or linearly dependent gradients, zero gradients), as torchjd's ``IMTLG`` does:
    it stays permutation-equivariant and ignores zero-gradient tasks, where the paper's formula,
    which singles out task 1, breaks down (if g_1 = 0, u_1 is undefined; with u_1 := 0
    it returns d = 0). K identical gradients g
    give α = 1/K and d = g. When ``1ᵀG⁺n`` vanishes (no direction meets the conditions) the
    weights are zero, as in torchjd. For K ≥ 3 badly scaled, correlated gradients can make the
    common projection c = 1/(1ᵀG⁻¹n) negative; the paper's closed form gives the same α then.
    """

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        check_gramian(gramian)
        v = equal_projection_weights(gramian)  # ∝ G⁺n, computed on the cosine matrix
        total = v.sum()
        solvable = total.abs() > torch.finfo(v.dtype).eps * v.abs().sum()
        weights = torch.where(solvable, v / torch.where(solvable, total, 1), 0)
        return weights.to(gramian.dtype)
