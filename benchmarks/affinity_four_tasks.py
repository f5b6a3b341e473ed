"""Task affinity on a four-task problem: which tasks belong together, measured (TAG).

    python benchmarks/affinity_four_tasks.py [--epochs 2] [--limit 10000] [--every 5] [--out DIR]

multi-mnist (Sener protocol) with two derived tasks beside the two digits: ``left-odd`` (is the
left digit odd) and ``right-large`` (is the right digit ≥ 5). Each derived task is a function of
one digit, so a good grouping pairs it with its digit: {left, left-odd} and {right, right-large}.
The benchmark is registered under ``multi-mnist-4`` by this script only (a user benchmark, as
``mtlkit.data.BENCHMARKS`` allows), then ``mtlkit.workflows.affinity.measure_affinity`` runs on
it: one LeNet training, the affinity measured every ``--every`` steps.
"""

from __future__ import annotations

import argparse
import hashlib

from mtlkit.config import parse_config
from mtlkit.data import BENCHMARKS, Benchmark, MultiTaskData, Split, TaskSpec, load_benchmark
from mtlkit.workflows.affinity import measure_affinity

TASKS = (
    TaskSpec("left", 10),
    TaskSpec("right", 10),
    TaskSpec("left-odd", 2),
    TaskSpec("right-large", 2),
)


def _with_derived_tasks(split: Split) -> Split:
    targets = dict(split.targets)
    targets["left-odd"] = targets["left"] % 2
    targets["right-large"] = (targets["right"] >= 5).long()
    return Split(split.inputs, targets)


def build(protocol: str, **options) -> MultiTaskData:
    """multi-mnist with the two derived tasks."""
    base = load_benchmark("multi-mnist", protocol=protocol, **options)
    return MultiTaskData(
        name="multi-mnist-4",
        protocol=protocol,
        tasks=list(TASKS),
        train=_with_derived_tasks(base.train),
        val=None if base.val is None else _with_derived_tasks(base.val),
        test=_with_derived_tasks(base.test),
        fingerprint=hashlib.sha256(f"{base.fingerprint}|left-odd|right-large".encode()).hexdigest(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=10000, help="training samples (default 10000)")
    parser.add_argument("--every", type=int, default=5, help="measure every N steps")
    parser.add_argument("--out", default="runs/affinity-multi-mnist-4")
    args = parser.parse_args()
    BENCHMARKS.register(
        "multi-mnist-4",
        Benchmark(
            description="multi-mnist with left-odd and right-large (benchmarks/ script only)",
            protocols=("sener",),
            tasks=lambda protocol: TASKS,
            build=build,
        ),
    )
    config = parse_config(
        {
            "name": "multi-mnist-4",
            "data": {"benchmark": "multi-mnist-4", "limit": args.limit, "val_fraction": 0.05},
            "model": {"backbone": "lenet", "head_hidden": 50},
            "optim": {"lr": 0.1},
            "schedule": {"name": "cosine"},
            "train": {"epochs": args.epochs, "batch_size": 64, "progress": False},
        }
    )
    result = measure_affinity(config, args.out, every=args.every, overwrite=True)
    print("inter-task affinity Z(i → j), rows: step on task i, columns: loss of task j")
    print(" " * 12 + "".join(f"{task:>13}" for task in result.tasks))
    for task, row in zip(result.tasks, result.affinity):
        print(f"{task:<12}" + "".join(f"{value:>+13.4f}" for value in row))
    for grouping in result.groupings:
        groups = " | ".join("{" + ", ".join(group) + "}" for group in grouping.groups)
        print(f"{len(grouping.groups)} network(s): {groups}  score {grouping.score:+.4f}")
    print(f"report: {result.out_dir / 'report.html'}")


if __name__ == "__main__":
    main()
