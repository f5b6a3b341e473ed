"""The precision a model runs in: ``fp32``, or autocast to ``bf16`` (CPU and CUDA) or ``fp16``
(CUDA), for training steps and evaluation passes alike. BatchNorm runs in float32 under autocast
(it is on autocast's float32 list), so a BatchNorm trunk needs nothing special. Training in
``fp16`` adds a loss scale (:mod:`mtlkit.training.precision`)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor

__all__ = ["PRECISIONS", "autocast_context", "check_precision", "float32", "precision_dtype"]

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
"""The values of ``train.precision``; the first is the default."""

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DEVICES = {"fp32": None, "bf16": ("cpu", "cuda"), "fp16": ("cuda",)}


def precision_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (``None`` for ``fp32``: no autocast)."""
    return _DTYPES.get(precision)


def check_precision(precision: str, device: torch.device | str) -> None:
    """Raise a clear ``ValueError`` if ``precision`` is unknown or not offered on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"train.precision must be one of {', '.join(PRECISIONS)}; got {precision!r}."
        )
    devices = _DEVICES[precision]
    kind = torch.device(device).type
    if devices is not None and kind not in devices:
        fix = "use 'bf16' (CPU and CUDA) or 'fp32'" if precision == "fp16" else "use 'fp32'"
        raise ValueError(
            f"train.precision {precision!r} runs on {' and '.join(devices)} only, not on "
            f"{kind!r}: {fix}."
        )


def autocast_context(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The autocast context of ``precision`` on ``device`` (a no-op for ``fp32``)."""
    dtype = precision_dtype(precision)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def float32(tensor: Tensor) -> Tensor:
    """A reduced-precision floating tensor in float32; any other tensor as it is."""
    if tensor.is_floating_point() and torch.finfo(tensor.dtype).bits < 32:
        return tensor.float()
    return tensor
