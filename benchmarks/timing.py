"""Timing shared by the benchmarks: the thread count and clock options, interleaved medians, and
the one-line description of the machine that every results file starts with."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path

import torch


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads`` and ``--clock`` to a benchmark's parser."""
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall-clock time, or this process's CPU time (steadier on a shared machine; use "
        "with --threads 1)",
    )


def timing_setup(args: argparse.Namespace) -> Callable[[], float]:
    """Apply ``--threads`` and return the clock ``--clock`` asks for."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return time.perf_counter if args.clock == "wall" else time.process_time


def interleaved_medians(
    runners: Mapping[Hashable, Callable[[int], object]], rounds: int, clock: Callable[[], float]
) -> dict[Hashable, float]:
    """Each runner's median time over ``rounds`` rounds, the runners interleaved and their order
    rotated every round (so that a slow spell of a shared machine falls on all of them); each
    is called with the round number, and round 0 warms up uncounted."""
    names = list(runners)
    times: dict[Hashable, list[float]] = {name: [] for name in names}
    for r in range(rounds + 1):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            runners[name](r)
            if r > 0:
                times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def load_average() -> str:
    """The machine's 1, 5 and 15-minute load averages, e.g. ``"2.1, 3.0, 3.4"``."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or ``"unknown CPU"``."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine() -> str:
    """One line: CPU model, cores, torch, threads, and the load when the run started."""
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {torch.get_num_threads()} intra-op thread; load average "
        f"at the start {load_average()} (the machine was shared with other jobs: absolute times "
        "are meaningless here, ratios measured interleaved are not)"
    )
