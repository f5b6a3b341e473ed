"""Process-group awareness: only the main process writes files or prints progress."""

from __future__ import annotations

import torch.distributed as dist


def rank() -> int:
    """This process's rank in the default process group (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Whether this process is the one that writes run files and prints."""
    return rank() == 0
