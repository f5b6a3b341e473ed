"""Processes training together: torchrun's environment, the process group, cross-rank reductions.

``torchrun --nproc-per-node N -m mtlkit train CONFIG`` starts N processes and tells each its place
through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). :func:`process_group` reads and checks them, joins the group (gloo on CPU, NCCL
on CUDA, each process on the GPU of its local rank) for the duration of a block, and yields the
:class:`ProcessGroupReplicas` that the trainer and the balancer average with. Without torchrun
(``WORLD_SIZE`` unset or 1) there is no group and nothing changes. Only the main process (rank 0)
writes files or prints.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "LaunchError",
    "ProcessGroupReplicas",
    "is_main_process",
    "local_device",
    "process_group",
    "rank",
    "world_size",
]

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class LaunchError(ValueError):
    """The processes were started inconsistently (torchrun's variables missing or contradictory)."""


def rank() -> int:
    """This process's rank: in the process group, else torchrun's ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes were started together: the process group's size, else torchrun's
    ``WORLD_SIZE`` (set before any group exists), else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process is the one that writes run files and prints."""
    return rank() == 0


@dataclass(frozen=True)
class _Launch:
    rank: int
    world_size: int
    local_rank: int


def _read_launch() -> _Launch | None:
    """torchrun's variables, checked; ``None`` when this is a single process."""
    env = os.environ
    if _integer(env, "WORLD_SIZE", "1") <= 1 and "RANK" not in env:
        return None
    missing = [name for name in _TORCHRUN_VARIABLES if name not in env]
    if missing:
        raise LaunchError(
            f"torchrun's variables are incomplete ({', '.join(missing)} not set): start several "
            "processes with torchrun (torchrun --nproc-per-node N -m mtlkit train CONFIG)."
        )
    launch = _Launch(
        _integer(env, "RANK"), _integer(env, "WORLD_SIZE"), _integer(env, "LOCAL_RANK")
    )
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size:
        raise LaunchError(
            f"RANK={launch.rank} and WORLD_SIZE={launch.world_size} are inconsistent: need "
            "0 <= RANK < WORLD_SIZE."
        )
    if not 0 <= launch.local_rank <= launch.rank:
        raise LaunchError(
            f"LOCAL_RANK={launch.local_rank} is inconsistent with RANK={launch.rank}: need "
            "0 <= LOCAL_RANK <= RANK."
        )
    return launch if launch.world_size > 1 else None


def _integer(env: Any, name: str, default: str | None = None) -> int:
    text = env.get(name, default)
    try:
        return int(text)
    except (TypeError, ValueError):
        raise LaunchError(
            f"{name}={text!r} is not an integer; start the run with torchrun."
        ) from None


def local_device(device: torch.device) -> torch.device:
    """A CUDA device without an index becomes the GPU of this process's local rank."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[ProcessGroupReplicas | None]:
    """Join the process group torchrun started, for the block; ``None`` for a single process.

    The backend is NCCL for CUDA devices and gloo otherwise (CPU). The group is destroyed when the
    block ends, also on an error, after a garbage collection: a ``DistributedDataParallel``
    wrapper left in a reference cycle must let go of the group before the group is destroyed
    (see :meth:`mtlkit.training.Trainer.release_replicas`). A group that already exists (a
    library user's) is used as it is and left alone.

    Raises:
        LaunchError: torchrun's variables are missing or contradict each other.
    """
    if dist.is_available() and dist.is_initialized():
        yield ProcessGroupReplicas(device) if dist.get_world_size() > 1 else None
        return
    launch = _read_launch()
    if launch is None:
        yield None
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        rank=launch.rank,
        world_size=launch.world_size,
        device_id=device if device.type == "cuda" else None,
    )
    try:
        yield ProcessGroupReplicas(device)
        dist.barrier()  # leave together: no process tears down while another still needs it
    finally:
        gc.collect()  # DDP reducers left unreachable let go of the group first
        dist.destroy_process_group()


class ProcessGroupReplicas:
    """The processes of the default process group as data-parallel replicas.

    Implements :class:`mtlkit.balancing.replicas.Replicas` (``size``, ``mean_``) and the few other
    collectives training needs. Every process must make the same calls in the same order.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @property
    def size(self) -> int:
        """The number of processes."""
        return dist.get_world_size()

    @property
    def rank(self) -> int:
        """This process's rank."""
        return dist.get_rank()

    def mean_(self, tensor: Tensor) -> None:
        """Replace ``tensor`` by its element-wise mean over the processes (sum, then divide)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(self.size)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any process (one collective, one host read)."""
        value = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, value: Any) -> list[Any] | None:
        """Every process's ``value`` (picklable), in rank order, on rank 0; ``None`` elsewhere."""
        values: list[Any] | None = [None] * self.size if self.rank == 0 else None
        dist.gather_object(value, values, dst=0)
        return values

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (picklable) on every process."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
