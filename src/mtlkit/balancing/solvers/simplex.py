"""MoCo's projection: the Euclidean projection onto the probability simplex."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["project_simplex"]


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row of ``v`` (``(..., K)``) onto the probability simplex.

    The sort-based algorithm of Held, Wolfe & Crowder (1974) / Duchi et al. (2008), exact.
    """
    k = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    ind = torch.arange(1, k + 1, dtype=v.dtype, device=v.device)
    cond = (u - css / ind) > 0
    rho = (cond * ind).amax(-1, keepdim=True)  # number of positive entries (≥ 1)
    theta = css.gather(-1, rho.long() - 1) / rho
    return (v - theta).clamp(min=0.0)
