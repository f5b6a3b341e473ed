"""Input noise on the training batches, drawn from a generator seeded per process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlkit.measure.noise import InputNoise, noise_generator
from mtlkit.training.hooks.base import Hook, StepState

__all__ = ["InputNoiseHook"]


class InputNoiseHook(Hook):
    """Replaces each training step's inputs by noisy copies (:class:`InputNoise`).

    Args:
        noise: the noise family.
        task_names: the tasks, in the order the noise is drawn for them (``per_task``).
        seed: seeds the generator; each process passes its own (``seed + rank``).
        device: where the generator draws.
    """

    name = "noise"
    per_process = True

    def __init__(
        self, noise: InputNoise, task_names: Sequence[str], seed: int, device: torch.device
    ) -> None:
        self.noise = noise
        self.task_names = list(task_names)
        self.generator = noise_generator(seed, device)

    def before_step(self, step: StepState) -> None:
        step.inputs = self.noise(step.inputs, self.task_names, self.generator)

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
