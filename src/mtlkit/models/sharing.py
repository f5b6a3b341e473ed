"""Sharing architectures: how the tasks share parameters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping

from torch import Tensor, nn

Inputs = Tensor | Mapping[str, Tensor]
"""One input for every task, or (multi-input) task name -> that task's own inputs."""
Features = Tensor | dict[str, Tensor]
"""The shared representation of :data:`Inputs`: one tensor, or one per task."""


class MultiTaskModel(nn.Module, ABC):
    """Base of every multi-task network: ``encode`` the input, ``decode`` each task's output.

    ``forward(x) == decode(encode(x))``; the training loop calls the two halves separately so that
    balancing methods can reach the shared representation. Inputs come in two shapes: one tensor
    that every task reads (one head per task on the same features), or a dict of per-task inputs
    (multi-input: each task's inputs go through the shared part, and only that task's head reads
    the result).
    """

    task_names: list[str]
    shared_representation: bool = False
    """Whether :meth:`encode` gives (for one input) a single tensor that every task reads and
    through which alone the losses reach the shared parameters: what a balancing method on the
    shared representation (``mgda-ub``) needs. True for hard sharing; an architecture whose tasks
    read features of their own (cross-stitch, MMoE, …) has none."""

    @abstractmethod
    def encode(self, x: Inputs) -> Features:
        """The shared representation of a batch: a tensor, or a dict ``task -> features`` of
        the per-task inputs ``x``."""

    @abstractmethod
    def decode(self, features: Features) -> dict[str, Tensor]:
        """Each task's output: every head on one tensor of features, or each task's head on its
        own features (a dict)."""

    def forward(self, x: Inputs) -> dict[str, Tensor]:
        return self.decode(self.encode(x))

    @abstractmethod
    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters every task's loss depends on."""

    @abstractmethod
    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """The parameters that only ``task``'s loss depends on."""


class HardSharing(MultiTaskModel):
    """Hard parameter sharing: one trunk for all tasks and one head per task.

    Shares the whole trunk; each task owns its head. The shared representation is the trunk's
    output. The reference for the others' parameter count and step time.
    """

    shared_representation = True

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("HardSharing needs at least one task head.")
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))
        self.task_names = list(heads)

    def encode(self, x: Inputs) -> Features:
        if isinstance(x, Tensor):
            return self.trunk(x)
        return {task: self.trunk(inputs) for task, inputs in x.items()}

    def decode(self, features: Features) -> dict[str, Tensor]:
        if isinstance(features, Tensor):
            return {name: head(features) for name, head in self.heads.items()}
        return {task: self.heads[task](z) for task, z in features.items()}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.trunk.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        if task not in self.heads:
            raise KeyError(f"no task {task!r}; tasks are {self.task_names}.")
        return self.heads[task].parameters()
