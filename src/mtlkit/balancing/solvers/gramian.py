"""Preparing a Gramian for the solvers: the working precision, the input check, the cosine matrix
and the unit-scale Gramian (both projected onto the PSD cone), and the equal-projection weights
that IMTL-G and ConFIG share.

The solves run in float64 (float32 on devices without float64, e.g. MPS) whatever the input
dtype: the problems are K×K, so this costs nothing next to the backward passes, and it keeps the
methods' guarantees at the precision of the Gramian rather than below it (a float32 solve of a
Gramian whose gradient norms differ by 10⁴ loses the small task entirely). Callers cast back.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "check_gramian",
    "cosine_gramian",
    "equal_projection_weights",
    "normalize_gramian",
    "work_dtype",
]


def work_dtype(device: torch.device) -> torch.dtype:
    """The dtype the K×K linear algebra runs in: float64 wherever the device supports it (MPS
    does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def check_gramian(gramian: Tensor, *, batched: bool = False) -> int:
    """Check that ``gramian`` is a square floating-point (K, K) matrix with K ≥ 1 (with
    ``batched``, a batch ``(..., K, K)`` of them); return K."""
    dims_ok = gramian.dim() >= 2 if batched else gramian.dim() == 2
    if not dims_ok or gramian.shape[-1] != gramian.shape[-2] or gramian.shape[-1] == 0:
        expected = "(..., K, K)" if batched else "(K, K)"
        raise ValueError(
            f"expected a square {expected} Gramian with K >= 1, got shape {tuple(gramian.shape)}."
        )
    if not gramian.is_floating_point():
        raise ValueError(f"expected a floating-point Gramian, got dtype {gramian.dtype}.")
    return gramian.shape[-1]


def cosine_gramian(gramian: Tensor) -> tuple[Tensor, Tensor]:
    """Split a Gramian into its (PSD) cosine matrix and the gradient norms: ``G ≈ N·C·N``.

    Returns ``(C, n)`` in the working precision, with ``n = √diag(G)`` and C the matrix
    ``N⁻¹GN⁻¹`` (unit diagonal) symmetrised and projected onto the PSD cone. A float32 Gramian of
    a long Jacobian is indefinite at the 1e-6..1e-5 level (relative to its diagonal, measured for
    P = 10⁵..10⁶), enough to make the small problems non-convex near their solutions; clamping the
    negative eigenvalues of C rather than of G makes the correction relative to each pair of
    gradients, so a task whose gradient is 10⁴ times smaller than the others keeps its own
    relative precision. A zero gradient (``nᵢ = 0``) gets row and column ``eᵢ`` in C: decoupled
    from the others, so that a problem posed on C leaves it alone.

    Solving on C instead of G resolves every task's constraint equally well whatever the spread
    of the gradient norms, where a problem on G resolves the small tasks only to the precision
    of the largest.
    """
    check_gramian(gramian, batched=True)
    g = gramian.detach().to(work_dtype(gramian.device))
    g = 0.5 * (g + g.transpose(-1, -2))
    tiny = torch.finfo(g.dtype).tiny
    diag = g.diagonal(dim1=-2, dim2=-1).clamp(min=0.0)
    norms = diag.sqrt()
    mean = diag.mean(-1, keepdim=True)
    nonzero = (norms > tiny**0.25 * mean.sqrt()) & (mean > tiny)
    norms = torch.where(nonzero, norms, 0.0)
    inv = torch.where(nonzero, 1.0 / torch.where(nonzero, norms, 1.0), 0.0)
    cos = inv[..., :, None] * g * inv[..., None, :]
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    coupled = nonzero[..., :, None] & nonzero[..., None, :]
    cos = torch.where(coupled, cos, eye)
    if g.shape[-1] > 1:
        values, vectors = torch.linalg.eigh(cos)
        cos = (vectors * values.clamp(min=0.0)[..., None, :]) @ vectors.transpose(-1, -2)
        cos = 0.5 * (cos + cos.transpose(-1, -2))
        cos = torch.where(coupled, cos, eye)  # decoupled entries exact, not eigen-noise
    return cos, norms


def equal_projection_weights(gramian: Tensor) -> Tensor:
    """``β = N⁻¹C⁺1``: the combination ``d = Jᵀβ`` whose projection onto every unit task gradient
    is 1 (``uᵢᵀd = 1`` for all i wherever the cosine matrix C is invertible), IMTL-G's and ConFIG's
    common core.

    Computed on C (:func:`cosine_gramian`), in the working precision, so that the spread of the
    gradient norms does not enter the conditioning; eigenvalues of C below ``K·eps`` of the
    *input's* dtype (its rounding level) count as zero in the pseudo-inverse. Zero gradients get
    β = 0.
    """
    cos, norms = cosine_gramian(gramian)
    k = cos.shape[-1]
    rtol = k * torch.finfo(gramian.dtype).eps
    inv = torch.where(norms > 0, 1.0 / torch.where(norms > 0, norms, 1.0), 0.0)
    return inv * (torch.linalg.pinv(cos, rtol=rtol, hermitian=True) @ torch.ones_like(norms))


def normalize_gramian(gramian: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetrise, project onto the PSD cone and scale a Gramian to unit mean diagonal.

    The projection is that of :func:`cosine_gramian` (relative to each pair of gradients).

    Returns:
        ``(Ĝ, s)`` in the working precision, with ``s = trace(G) / K`` (the mean squared gradient
        norm) and ``Ĝ = N·PSD(C)·N / s``. Where ``s`` is 0 (all gradients zero) ``Ĝ`` is 0 and ``s``
        is returned as 1, so that callers can divide by it safely.
    """
    cos, norms = cosine_gramian(gramian)
    scale = (norms * norms).mean(-1)
    positive = scale > torch.finfo(cos.dtype).tiny
    safe = torch.where(positive, scale, torch.ones_like(scale))
    g = norms[..., :, None] * cos * norms[..., None, :]
    g = torch.where(positive[..., None, None], g / safe[..., None, None], torch.zeros_like(g))
    return g, safe
