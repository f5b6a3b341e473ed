"""Voting over noisy views: M noisy copies of each input at evaluation or prediction time, the
model's M outputs combined per task by majority vote or mean probability
(:meth:`mtlkit.tasks.Task.combine_views`). One view is the input as it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from mtlkit.measure.noise import InputNoise, noise_generator
from mtlkit.models import Inputs, MultiTaskModel
from mtlkit.tasks import Task
from mtlkit.tasks.base import Combine


@dataclass(frozen=True)
class Views:
    """How many views of each input, drawn from which noise, combined how.

    Args:
        noise: the noise family the views are drawn from (every task sees the same views).
        views: M ≥ 1; with 1 the model reads the input as it is.
        combine: ``vote`` or ``mean``.
        seed: seeds the draws, so an evaluation is reproducible.
    """

    noise: InputNoise
    views: int = 1
    combine: Combine = "vote"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.views < 1 or self.combine not in ("vote", "mean"):
            raise ValueError(
                f"views must be ≥ 1 and combine 'vote' or 'mean', got views={self.views}, "
                f"combine={self.combine!r}."
            )
        if self.views > 1 and not self.noise.active:
            raise ValueError("several views of an input need a noise that changes it.")

    def check(self, tasks: Sequence[Task]) -> None:
        """Refuse, before any work, tasks that cannot combine several views of an input.

        Raises:
            ValueError: with more than one view, a task has no ``combine_views``.
        """
        if self.views == 1:
            return
        unable = [t.name for t in tasks if not callable(getattr(t, "combine_views", None))]
        if unable:
            raise ValueError(
                f"task(s) {unable} cannot combine {self.views} views of an input: give their "
                "class a combine_views(outputs, how) method, or evaluate with one view."
            )

    def generator(self, device: torch.device | str) -> torch.Generator:
        """A fresh generator for one evaluation pass."""
        return noise_generator(self.seed, device)

    @torch.no_grad()
    def draw(
        self, model: MultiTaskModel, inputs: Inputs, generator: torch.Generator
    ) -> list[dict[str, Tensor]]:
        """The model's outputs for each of the M views of a batch (the inputs as they are with
        one view)."""
        if self.views == 1:
            return [model(inputs)]
        shared = replace(self.noise, per_task=False)
        return [model(shared(inputs, (), generator)) for _ in range(self.views)]

    def combined(self, tasks: Sequence[Task], drawn: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Each task's output combined over the views of :meth:`draw` (one view: as it is)."""
        if len(drawn) == 1:
            return drawn[0]
        return {
            task.name: task.combine_views(
                torch.stack([outputs[task.name] for outputs in drawn]), self.combine
            )
            for task in tasks
            if task.name in drawn[0]
        }

    def outputs(
        self,
        model: MultiTaskModel,
        inputs: Inputs,
        tasks: Sequence[Task],
        generator: torch.Generator,
    ) -> dict[str, Tensor]:
        """Each task's combined output for a batch (the model's plain output with one view)."""
        return self.combined(tasks, self.draw(model, inputs, generator))
