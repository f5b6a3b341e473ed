"""Aligned-MTL (Senushkin et al., 2023): make the task gradients orthogonal and of equal size."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.options import check_choice, check_number
from mtlkit.balancing.registry import register
from mtlkit.balancing.solvers.gramian import check_gramian, cosine_gramian, work_dtype

_SCALES = ("min", "median", "rmse")


def balance_transformation(
    gramian: Tensor, scale: str = "min", rtol: float | None = None
) -> Tensor:
    """Aligned-MTL's K×K balance matrix B = √λ_s · V Λ^(-1/2) Vᵀ (λ_s: the chosen scale level).

    Computed in float64 (the working precision). Which eigenvalues of G count as zero (their
    directions get B = 0):

    * with ``rtol``, those at or below ``rtol · λ_max`` (the official code's rule, with K·eps);
    * by default, the K − R smallest, R being the numerical rank of the cosine matrix
      ``C = N⁻¹GN⁻¹`` at ``K · eps`` of the Gramian's dtype. Unlike a threshold relative to λ_max,
      this does not depend on the spread of the gradient norms: a float32 Gramian resolves each
      entry to its own scale, so a task 10⁴ times smaller than the others is a real direction
      (the official rule drops it in float32 and rescales every task to the wrong level).

    Done with masks rather than by slicing to the rank, so that nothing waits on the device. A
    zero Gramian gives the identity (official code).
    """
    k = gramian.shape[0]
    work = gramian.detach().to(work_dtype(gramian.device))
    eigenvalues, vectors = torch.linalg.eigh(work)  # ascending; NOT the removed torch.symeig
    if rtol is None:
        cos, _ = cosine_gramian(gramian)
        cos_values = torch.linalg.eigvalsh(cos)
        tolerance = k * torch.finfo(gramian.dtype).eps * cos_values[-1]
        rank = (cos_values > tolerance).sum()
        positions = torch.arange(k, device=gramian.device)
        kept = (positions >= k - rank) & (eigenvalues > 0)
    else:
        kept = eigenvalues > rtol * eigenvalues[-1].clamp(min=0)
    rank = kept.sum()
    inf = torch.full_like(eigenvalues, float("inf"))
    if scale == "min":
        level = torch.where(kept, eigenvalues, inf).min()
    elif scale == "median":  # lower median of the kept eigenvalues, like torch.median
        ordered = torch.where(kept, eigenvalues, inf).sort().values
        level = ordered[(rank - 1).clamp(min=0) // 2]
    else:  # "rmse": the mean eigenvalue, i.e. the RMS of the singular values
        level = torch.where(kept, eigenvalues, 0).sum() / rank.clamp(min=1)
    inv_sqrt = torch.where(kept, torch.where(kept, eigenvalues, 1).rsqrt(), 0)
    balance = (vectors * inv_sqrt) @ vectors.T * level.sqrt()
    identity = torch.eye(k, dtype=work.dtype, device=work.device)
    return torch.where(rank > 0, balance, identity)


@register("aligned-mtl")
class AlignedMTL(GramianWeighting):
    """Aligned-MTL: align the task gradients' principal components and equalise their scales.

    Senushkin, Patakin, Kuznetsov, Konushin. "Independent Component Alignment for Multi-Task
    Learning." CVPR 2023 (Algorithm 1).

    With the Gramian ``M = J Jᵀ = V Λ Vᵀ`` (eigenvalues λ_1 ≥ … ≥ λ_R > 0 on its span, R its rank),

        B = √λ_R · V Λ^(-1/2) Vᵀ,         Ĵ = Bᵀ J,        d = Ĵᵀ w = Jᵀ (B w)

    so the weights are ``B w``. The balanced matrix Ĵ has Gramian ``B M B = λ_R · V_R V_Rᵀ``: on its
    span all its singular values equal the smallest one of J, √λ_R (no dominating task, condition
    number 1). Orthogonal gradients are rescaled to the smallest gradient's norm; scaling J by c
    scales d by c.

    Choices: ``w = 1`` (the sum of the balanced gradients), as in the official implementation and
    LibMTL; torchjd's ``AlignedMTL`` uses the mean (w = 1/K), i.e. our result divided by K.
    The rank is read off the cosine matrix by default (see :func:`balance_transformation`; the
    official code's ``rtol = K·eps`` relative to λ_max on request); computed in float64 with
    ``torch.linalg.eigh`` (LibMTL's
    ``torch.symeig`` no longer exists). This is the whole-model variant on the shared parameters;
    the paper's representation variant (Aligned-MTL-UB) is not offered yet.

    Args:
        scale: the level the singular values are balanced to: ``"min"`` (the paper: the smallest),
            ``"median"`` or ``"rmse"`` (alternatives of the official code).
        rtol: relative tolerance below which Gramian eigenvalues count as zero (relative to the
            largest, the official code's rule); ``None`` (default) decides the rank on the cosine
            matrix at K·eps of the Gramian's dtype, whatever the spread of the gradient norms.
    """

    def __init__(
        self, num_tasks: int | None = None, *, scale: str = "min", rtol: float | None = None
    ) -> None:
        super().__init__(num_tasks=num_tasks)
        self.scale = check_choice("aligned-mtl", "scale", scale, _SCALES)
        self.rtol = (
            None
            if rtol is None
            else check_number("aligned-mtl", "rtol", rtol, low=0.0, high=1.0, high_inclusive=False)
        )

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        check_gramian(gramian)
        balance = balance_transformation(gramian, self.scale, self.rtol)
        return balance.sum(dim=1).to(gramian.dtype)
