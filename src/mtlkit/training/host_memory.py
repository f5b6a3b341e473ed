"""Keep freed host memory in the process, so that a CPU training step does not fault its pages
in again every step.

PyTorch's CPU allocator takes each tensor from ``malloc`` and gives it back on ``free``. glibc
serves a large block (above ``M_MMAP_THRESHOLD``, 128 KiB to start with) by ``mmap`` and returns
it to the system on ``free``, and trims the heap's free top above ``M_TRIM_THRESHOLD``; the next
step's activations of the same sizes are then fresh pages, each faulted in and zeroed by the
kernel. On the demo's network at batch 256 that was 30,000–40,000 page faults a step; without
them the step took 0.59–0.68 of the time (``benchmarks/host_memory.py``). Raising both
thresholds keeps the blocks in the heap for the next step, as jemalloc or tcmalloc would
(PyTorch's CPU tuning guide suggests preloading one of those; this needs nothing installed).

The cost: the process keeps its peak heap until it exits instead of handing it back between
steps, which a training process reaches again every step anyway. Blocks above 32 MiB (the
largest threshold glibc takes) are still mapped per allocation.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

__all__ = ["OPT_OUT", "retain_freed_memory"]

OPT_OUT = "MTLKIT_RETAIN_FREED_MEMORY"
"""Set to ``0`` to leave the allocator's settings as they are."""

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_LARGEST_MMAP_THRESHOLD = 32 * 2**20  # HEAP_MAX_SIZE / 2 on 64-bit glibc; larger is refused
_NEVER_TRIM = 2**31 - 1  # the largest int mallopt takes


@functools.cache
def retain_freed_memory() -> bool:
    """Have glibc keep freed blocks of up to 32 MiB in the process (see the module's text);
    once per process. Returns whether the settings took: ``False`` off Linux, with a C library
    without ``mallopt`` (musl's does nothing and says so), or with ``MTLKIT_RETAIN_FREED_MEMORY=0``
    in the environment."""
    if os.environ.get(OPT_OUT, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first: setting either one ends glibc's
    # own adjustment of both
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _LARGEST_MMAP_THRESHOLD) == 1
        and mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    )
