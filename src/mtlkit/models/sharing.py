"""Sharing architectures: how the tasks share parameters."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping

from torch import Tensor, nn


class MultiTaskModel(nn.Module, ABC):
    """Base of every multi-task network: ``encode`` the input, ``decode`` each task's output.

    ``forward(x) == decode(encode(x))``; the training loop calls the two halves separately so that
    balancing methods can reach the shared representation.
    """

    task_names: list[str]

    @abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """The shared representation of a batch."""

    @abstractmethod
    def decode(self, features: Tensor) -> dict[str, Tensor]:
        """Each task's output from the shared representation."""

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.decode(self.encode(x))

    @abstractmethod
    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters every task's loss depends on."""

    @abstractmethod
    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """The parameters that only ``task``'s loss depends on."""


class HardSharing(MultiTaskModel):
    """Hard parameter sharing: one trunk for all tasks and one head per task."""

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("HardSharing needs at least one task head.")
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))
        self.task_names = list(heads)

    def encode(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def decode(self, features: Tensor) -> dict[str, Tensor]:
        return {name: head(features) for name, head in self.heads.items()}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.trunk.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        if task not in self.heads:
            raise KeyError(f"no task {task!r}; tasks are {self.task_names}.")
        return self.heads[task].parameters()
