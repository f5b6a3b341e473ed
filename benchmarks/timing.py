"""Command-line timing options shared by the benchmarks: thread count and which clock to read."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

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
