"""Noise on the inputs: the *diversity enhancement* of training, and the views of evaluation.

:class:`InputNoise` draws, in this order, a random shift of each image by at most ``shift``
pixels in each direction (the uncovered border takes the image's smallest value, its
background), Gaussian noise of standard deviation ``gaussian``, and salt-and-pepper noise on a
fraction ``salt_pepper`` of the values (half set to the sample's largest value, half to its
smallest). Every draw comes from a ``torch.Generator`` the caller seeds, so a run's noise is a
function of its seed; the training loop applies it in training steps only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlkit.models import Inputs


@dataclass(frozen=True)
class InputNoise:
    """A noise family for inputs.

    Args:
        gaussian: the standard deviation of additive Gaussian noise (0: none).
        salt_pepper: the fraction of values replaced by the sample's extremes, in [0, 1].
        shift: images only: each image moves by up to this many pixels along each axis.
        per_task: with one input for every task, draw the noise independently for each task
            (each task's head then reads its own noisy copy through the shared trunk).
    """

    gaussian: float = 0.0
    salt_pepper: float = 0.0
    shift: int = 0
    per_task: bool = False

    def __post_init__(self) -> None:
        if not (self.gaussian >= 0.0 and 0.0 <= self.salt_pepper <= 1.0 and self.shift >= 0):
            raise ValueError(
                "noise needs gaussian ≥ 0, salt_pepper in [0, 1] and shift ≥ 0; got "
                f"gaussian={self.gaussian}, salt_pepper={self.salt_pepper}, shift={self.shift}."
            )

    @property
    def active(self) -> bool:
        """Whether the noise changes anything."""
        return bool(self.gaussian or self.salt_pepper or self.shift)

    def __call__(self, inputs: Inputs, tasks: Sequence[str], generator: torch.Generator) -> Inputs:
        """Noisy copies of ``inputs``: one tensor, or (multi-input or ``per_task``) one per
        task of ``tasks``, drawn in task order."""
        if isinstance(inputs, Tensor):
            if not self.per_task:
                return self.draw(inputs, generator)
            return {task: self.draw(inputs, generator) for task in tasks}
        return {task: self.draw(x, generator) for task, x in inputs.items()}

    def draw(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """One noisy copy of the batch ``x`` (N, ...)."""
        if self.shift:
            x = _shift(x, self.shift, generator)
        if self.gaussian:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + self.gaussian * noise
        if self.salt_pepper:
            x = _salt_pepper(x, self.salt_pepper, generator)
        return x


def noise_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``, for :class:`InputNoise`."""
    return torch.Generator(device=device).manual_seed(seed)


def _extremes(x: Tensor) -> tuple[Tensor, Tensor]:
    """Each sample's smallest and largest value, shaped to broadcast over the sample."""
    flat = x.reshape(len(x), -1)
    shape = (len(x),) + (1,) * (x.dim() - 1)
    return flat.amin(dim=1).reshape(shape), flat.amax(dim=1).reshape(shape)


def _shift(x: Tensor, most: int, generator: torch.Generator) -> Tensor:
    if x.dim() != 4:
        raise ValueError(
            f"noise.shift moves images (N, C, H, W); these inputs have shape {tuple(x.shape)}."
        )
    n, c, h, w = x.shape
    low, _ = _extremes(x)
    padded = F.pad(x - low, (most, most, most, most)) + low  # borders: the background
    offsets = torch.randint(0, 2 * most + 1, (2, n), generator=generator, device=x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)
    samples = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[samples, channels, rows[:, None, :, None], cols[:, None, None, :]]


def _salt_pepper(x: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    low, high = _extremes(x)
    draw = torch.rand(x.shape, generator=generator, device=x.device)
    x = torch.where(draw < fraction / 2, low, x)
    return torch.where((draw >= fraction / 2) & (draw < fraction), high, x)
