"""The base of the architectures whose tasks read features of their own (soft sharing).

Cross-stitch, MMoE, CGC/PLE, MTAN and DSelect-k all map one input to one feature tensor *per
task*: :meth:`SoftSharing.encode` returns a dict ``task -> features``, and each task's head reads
its own. Which parameters are shared is decided per architecture: a parameter is task ``k``'s
(:meth:`~mtlkit.models.MultiTaskModel.task_parameters`) when only task ``k``'s loss can depend on
it — its head and the modules :meth:`SoftSharing.private_modules` names (gates, task experts,
attention) — and shared otherwise. There is no single shared representation
(``shared_representation`` is false), so a balancing method that works on one (``mgda-ub``) does
not apply; the gradient methods work on the shared parameters.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from mtlkit.models.sharing import Features, Inputs, MultiTaskModel

__all__ = ["SoftSharing"]


class SoftSharing(MultiTaskModel):
    """A multi-task network whose tasks each read their own features.

    Subclasses implement :meth:`encode_tasks` (each task's features of one batch) and
    :meth:`private_modules` (each task's own modules besides its head).

    Args:
        heads: task name -> head; every head reads features of the trunk's width.
    """

    def __init__(self, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError(f"{type(self).__name__} needs at least one task head.")
        self.heads = nn.ModuleDict(dict(heads))
        self.task_names = list(heads)

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Refuse option values this architecture cannot take, naming the option (the checks
        that need no trunk, so that a config is checked before any work starts)."""

    @abstractmethod
    def encode_tasks(self, x: Tensor, tasks: Sequence[str]) -> dict[str, Tensor]:
        """The features of ``tasks`` (a subset of ``task_names``, in order) for one batch."""

    @abstractmethod
    def private_modules(self, task: str) -> list[nn.Module]:
        """The modules besides its head that only ``task``'s loss depends on."""

    def encode(self, x: Inputs) -> Features:
        if isinstance(x, Tensor):
            return self.encode_tasks(x, self.task_names)
        # one dataset per task: each task's own inputs go through the network for that task
        return {task: self.encode_tasks(inputs, [task])[task] for task, inputs in x.items()}

    def decode(self, features: Features) -> dict[str, Tensor]:
        if isinstance(features, Tensor):
            raise TypeError(
                f"{type(self).__name__}.decode takes each task's own features (the dict that "
                "encode returns), not one tensor."
            )
        return {task: self.heads[task](z) for task, z in features.items()}

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        if task not in self.heads:
            raise KeyError(f"no task {task!r}; tasks are {self.task_names}.")
        yield from self.heads[task].parameters()
        for module in self.private_modules(task):
            yield from module.parameters()

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        private = {id(p) for task in self.task_names for p in self.task_parameters(task)}
        return (p for p in self.parameters() if id(p) not in private)
