"""Mixed precision for the training loop: ``fp32``, ``bf16`` autocast, ``fp16`` with a loss scale.

The forward pass and the task losses run under :func:`torch.autocast`; the balancer's backward
runs outside it, so that the per-task gradients of the (float32) parameters, their Gramian and
the small solvers stay in float32/float64 whatever the activations' dtype (the engine also turns
autocast off around its own linear algebra, for loops that call ``balancer.backward`` inside
autocast). The precisions and their autocast are :mod:`mtlkit.measure.precision` (evaluation
uses them too).

``fp16`` has too few exponent bits for small gradients, so it comes with a dynamic loss scale
(:class:`LossScale`): the gradient flowing back from the task heads' outputs is multiplied by a
power of two ``S``, the model's gradients are divided by ``S`` before the step, and a step whose
gradients overflowed is skipped and ``S`` halved. The scale is applied at the heads' outputs, not
to the losses, so that the balancer reads the true loss values (uncertainty weighting, DWA, DB-MTL
and MGDA's normalisations read them) and its own parameters' gradients are not scaled.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LossScale"]


class _ScaleGradient(torch.autograd.Function):
    """The identity forward; the backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


class LossScale:
    """A dynamic loss scale for ``fp16`` training, applied at the heads' outputs.

    Args:
        init: the first scale (a power of two, so that scaling and unscaling are exact).
        growth_interval: steps without overflow after which the scale doubles.

    Use: ``outputs = scale.apply(outputs)`` before the losses, then after the backward
    ``if scale.unscale(model): optimizer.step()`` and ``scale.update()``.
    """

    def __init__(self, init: float = 2.0**16, growth_interval: int = 2000) -> None:
        if init <= 0 or growth_interval < 1:
            raise ValueError("LossScale: init must be > 0 and growth_interval >= 1.")
        self.scale = float(init)
        self.growth_interval = growth_interval
        self._good_steps = 0
        self._overflow = False

    def apply(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The heads' outputs, whose backward gradients are multiplied by the scale."""
        return {name: _ScaleGradient.apply(out, self.scale) for name, out in outputs.items()}

    def unscale(self, model: nn.Module) -> bool:
        """Divide the model's gradients by the scale; return whether they are all finite (the
        step may be taken). Non-finite gradients are cleared, so that nothing is applied."""
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, 1.0 / self.scale)
            finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
            self._overflow = not bool(finite)
        else:
            self._overflow = False
        if self._overflow:
            for p in model.parameters():
                p.grad = None
        return not self._overflow

    def update(self) -> None:
        """Halve the scale after an overflow; double it after ``growth_interval`` clean steps."""
        if self._overflow:
            self.scale /= 2.0
            self._good_steps = 0
            return
        self._good_steps += 1
        if self._good_steps == self.growth_interval:
            self.scale *= 2.0
            self._good_steps = 0

    def state_dict(self) -> dict[str, float | int]:
        """The scale and the clean steps since it last changed."""
        return {"scale": self.scale, "good_steps": self._good_steps}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        """Restore :meth:`state_dict`."""
        self.scale, self._good_steps = float(state["scale"]), int(state["good_steps"])
