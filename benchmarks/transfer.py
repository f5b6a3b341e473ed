"""Transfer on multi-mnist: few-shot Fashion-MNIST from its trunks, the cost of adding a task
(BWT), and per-task learning rates against the shared one. Prints three tables.

    OMP_NUM_THREADS=1 MTLKIT_DATA=DIR python benchmarks/transfer.py [--epochs 2] [--draws 10]

``DIR`` holds ``mnist/`` and ``fashion-mnist/`` (see docs/data.md). The steps:

1. ``mtlkit baselines`` on multi-mnist (sener, seed CNN, SGD, cosine): the multi-task run and
   one single-task run per task;
2. few-shot ``fashion`` (Fashion-MNIST, the ``mnist+fashion`` benchmark's task): a new linear
   head on N images per class, for the multi-task trunk, each single-task trunk and a random
   initialisation of the same network (mean ± 95 % CI over the draws);
3. add task ``right`` to the single-task ``left`` run, the trunk learning for one epoch: the
   old task's test accuracy before and after (BWT);
4. the multi-task configuration trained again with per-task learning rates
   (``optim.task_lr_scale``), against the run of step 1 (same seed, data and epochs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mtlkit.config import parse_config
from mtlkit.workflows import train, train_with_baselines
from mtlkit.workflows.add_task import add_task
from mtlkit.workflows.fewshot import fewshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-transfer"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--shots", default="1,5,10,50")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--scales", default="left=0.5,right=2", help="optim.task_lr_scale")
    args = parser.parse_args()
    raw = {
        "name": "transfer",
        "data": {"benchmark": "multi-mnist", "protocol": "sener"},
        "model": {"backbone": "cnn"},
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        "schedule": {"name": "cosine"},
        "train": {"epochs": args.epochs, "progress": False},
    }
    start = time.perf_counter()
    comparison = args.out / "baselines"
    if not (comparison / "comparison.json").is_file():
        train_with_baselines(parse_config(raw), comparison)

    shots = [int(n) for n in args.shots.split(",")]
    few = fewshot(
        comparison, "fashion", shots, args.draws, overrides=["data.benchmark=mnist+fashion"]
    )
    print(
        f"\nfew-shot Fashion-MNIST ({args.draws} draws, linear head, 100 Adam steps), test "
        f"accuracy, mean ± 95% CI; trunks trained {args.epochs} epochs on multi-mnist"
    )
    print(few.table())

    added = add_task(
        comparison / "single-left",
        None,
        args.out / "add-right",
        ["tasks.include=[right]", "train.epochs=1"],
    )
    print("\nadd task `right` to the single-task `left` run (trunk learning, 1 epoch)")
    print("| old task | before | after | BWT |")
    print("|---|---|---|---|")
    for name, before in added.before.items():
        print(f"| {name} | {before:.4f} | {added.after[name]:.4f} | {added.bwt:+.4f} |")
    print(f"new task `right`: test accuracy {added.run.test['right'].accuracy:.4f}")

    scales = {k: float(v) for k, v in (item.split("=") for item in args.scales.split(","))}
    per_task = train(
        parse_config({**raw, "optim": {**raw["optim"], "task_lr_scale": scales}}),
        args.out / "per-task-lr",
    )
    shared = test_accuracy(comparison / "multi-task")
    print(f"\nper-task learning rates (heads: {scales} × lr 0.05) against one shared rate")
    print("| task | shared lr | per-task lr | diff |")
    print("|---|---|---|---|")
    for name, report in per_task.test.items():
        print(
            f"| {name} | {shared[name]:.4f} | {report.accuracy:.4f} | "
            f"{report.accuracy - shared[name]:+.4f} |"
        )
    print(f"\nwall time {time.perf_counter() - start:.0f}s")


def test_accuracy(run_dir: Path) -> dict[str, float]:
    """The test accuracy of each task of a finished run, from its ``metrics.json``."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {name: report["accuracy"] for name, report in metrics["test"].items()}


if __name__ == "__main__":
    main()
