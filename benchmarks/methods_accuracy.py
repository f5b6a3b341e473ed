"""Train every balancing method on multi-mnist for a few epochs; print test accuracy per task.

    python benchmarks/methods_accuracy.py [--epochs 3] [--backbone lenet] [--methods ew mgda ...]

Each run uses the same seed, data, network and optimizer; only the balancer differs. Step-time
ratios are measured by ``benchmarks/balancing.py`` (whole runs are too noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import math
import tempfile

from mtlkit.balancing import available
from mtlkit.config import parse_config
from mtlkit.workflows import train

#: Options for methods that have no usable default (``fixed`` needs its weights).
REQUIRED_OPTIONS = {"fixed": {"lam": 0.5}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--backbone", default="lenet", choices=["lenet", "cnn", "mlp"])
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--limit", type=int, default=None, help="samples per split (default all)")
    parser.add_argument("--methods", nargs="*", default=None, help="default: every method")
    args = parser.parse_args()
    methods = args.methods or [info.name for info in available()]
    if "ew" in methods:  # the reference row comes first
        methods.remove("ew")
        methods.insert(0, "ew")

    rows = []
    with tempfile.TemporaryDirectory() as out:
        for name in methods:
            config = parse_config(
                {
                    "name": f"methods-{name}",
                    "data": {"benchmark": "multi-mnist", "protocol": "sener", "limit": args.limit},
                    "model": {"backbone": args.backbone},
                    "balancer": {"name": name, **REQUIRED_OPTIONS.get(name, {})},
                    "optim": {"name": "sgd", "lr": args.lr, "momentum": 0.9},
                    "schedule": {"name": "cosine"},
                    "train": {"epochs": args.epochs, "progress": False},
                }
            )
            result = train(config, f"{out}/{name}")
            accuracy = {task: report.accuracy for task, report in result.test.items()}
            rows.append((name, accuracy))
            print(f"done {name}: {accuracy}", flush=True)

    tasks = list(rows[0][1])
    print(f"\nmulti-mnist (sener), {args.backbone}, {args.epochs} epochs, SGD lr {args.lr}, cosine")
    print("| method | " + " | ".join(f"test acc {t}" for t in tasks) + " | mean |")
    print("|---" * (len(tasks) + 2) + "|")
    for name, accuracy in rows:
        mean = sum(accuracy.values()) / len(accuracy)
        cells = " | ".join(f"{accuracy[t]:.4f}" for t in tasks)
        finite = "" if all(math.isfinite(v) for v in accuracy.values()) else " (non-finite)"
        print(f"| {name}{finite} | {cells} | {mean:.4f} |")


if __name__ == "__main__":
    main()
