"""The demo's command (``mtlkit baselines configs/multi-mnist.yaml``) on 1, 2 and 3 workers, and
with the single-task runs at the multi-task run's priority.

    MTLKIT_DATA=/path/to/data python benchmarks/baselines_workers.py [--limit 6000]
        [--epochs N] [--rounds 1] [--variants "2 workers,3 workers"]
        [--out runs/bench-baselines-workers]

Each variant is the whole command in a fresh process, so each time counts what a user waits
for (start, data, the K+1 = 3 trainings, the report):

* ``sequential``: ``--workers 1``, the trainings one after another on torch's default threads
  (the cores), as ``baselines`` ran before it had workers;
* ``2 workers``: two trainings at once, one thread each, the third after them;
* ``3 workers``: all three at once, one thread each (1.5 processes per core on 2 cores), the
  single-task runs at a lower priority (``baselines.SINGLE_TASK_NICE``), as the command runs;
* ``3 workers at one priority``: the same, all three at one priority.

The variants run back to back in each round, their order rotated every round, and the ratios
(to the first variant of ``--variants``) are of the medians (a slow spell of a shared machine
then falls on all of them). ``--limit`` keeps the first pairs of the training set (0: the full
set). Each row shows the mean multi-task test accuracy, and the load average before and after
the variant.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from timing import load_average, machine

from mtlkit.workflows.baselines import SINGLE_TASK_NICE

VARIANTS = {
    "sequential": (1, True),
    "2 workers": (2, True),
    "3 workers": (3, True),
    "3 workers at one priority": (3, False),
}
"""Each variant's ``--workers``, and whether the single-task runs yield to the multi-task run."""

EQUAL_PRIORITY = (
    "import sys; from mtlkit.workflows import baselines; baselines.SINGLE_TASK_NICE = 0; "
    "from mtlkit.cli.main import main; sys.exit(main(sys.argv[1:]))"
)
"""The command's entry point with every run at one priority (the jobs' niceness is set in the
parent, so patching it there is enough)."""


def run_variant(workers: int, yielding: bool, limit: int, epochs: int | None, out: Path) -> float:
    """The wall seconds of the demo's command with ``--workers`` ``workers`` (``yielding``: the
    single-task runs at a lower priority, as the command runs them)."""
    shutil.rmtree(out, ignore_errors=True)
    entry = ["-m", "mtlkit"] if yielding else ["-c", EQUAL_PRIORITY]
    command = [sys.executable, *entry, "baselines", "configs/multi-mnist.yaml"]
    settings = ["train.progress=false"]
    if limit:
        settings.append(f"data.limit={limit}")
    if epochs is not None:
        settings.append(f"train.epochs={epochs}")
    for setting in settings:
        command += ["--set", setting]
    command += ["--out", str(out), "--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def mean_multi_task_accuracy(out: Path) -> float:
    """The mean over tasks of the multi-task run's test accuracy, from ``comparison.json``."""
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    return statistics.fmean(row["multi_task"] for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=6000, help="training pairs (0: all)")
    parser.add_argument("--epochs", type=int, help="train.epochs (default: the config's)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)}; the ratios are to the first",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench-baselines-workers"))
    args = parser.parse_args()
    if "OMP_NUM_THREADS" in os.environ:
        parser.error("unset OMP_NUM_THREADS: it would fix every variant's threads")
    if os.nice(0) + SINGLE_TASK_NICE > 19:
        parser.error(
            f"run at niceness {19 - SINGLE_TASK_NICE} or less (now {os.nice(0)}): above it the "
            "single-task runs' lower priority is capped at 19 and the priority variants coincide"
        )
    size = f"the first {args.limit} pairs" if args.limit else "the full training set"
    print(f"{machine()}\nmtlkit baselines configs/multi-mnist.yaml on {size}\n", flush=True)
    names: list[str] = []
    for name in args.variants.split(","):
        if name not in VARIANTS:
            parser.error(f"--variants: {name!r} is none of {', '.join(VARIANTS)}")
        names += [] if name in names else [name]
    reference = names[0]
    walls: dict[str, list[float]] = {name: [] for name in names}
    print("| round | variant | wall s | mean multi-task accuracy | load before → after |")
    print("|---|---|---|---|---|", flush=True)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            before = load_average()
            out = args.out / name.replace(" ", "-")
            walls[name].append(run_variant(*VARIANTS[name], args.limit, args.epochs, out))
            accuracy = mean_multi_task_accuracy(out)
            print(
                f"| {round_ + 1} | {name} | {walls[name][-1]:.1f} | {accuracy:.4f} | "
                f"{before} → {load_average()} |",
                flush=True,
            )
    medians = {name: statistics.median(times) for name, times in walls.items()}
    print(f"\n| variant | median wall s | time / {reference} |\n|---|---|---|")
    for name in names:
        print(f"| {name} | {medians[name]:.1f} | {medians[name] / medians[reference]:.2f} |")


if __name__ == "__main__":
    main()
