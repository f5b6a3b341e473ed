"""Conventions the iterative solvers share: how often they test convergence, their default
tolerance, and the fraction-to-the-boundary step that keeps an iterate positive."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_every", "default_tol", "max_step"]


def check_every(device: torch.device) -> int:
    """How many iterations between convergence tests (each one is a host sync off the CPU)."""
    return 2 if device.type == "cpu" else 4


def default_tol(dtype: torch.dtype) -> float:
    """The solvers' default relative tolerance: 1e-12 in float64, 1e-6 otherwise."""
    return 1e-12 if dtype == torch.float64 else 1e-6


def max_step(v: Tensor, dv: Tensor) -> Tensor:
    """Largest t ≤ 1 with v + t·dv ≥ 0 (v > 0), per batch row: 1 / max(1, max(−dv/v))."""
    return (-(dv / v).amin(-1)).clamp(min=1.0).reciprocal()
