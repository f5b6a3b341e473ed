"""Process-group awareness: only the main process writes files or prints progress."""

from __future__ import annotations

import os

import torch.distributed as dist


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
