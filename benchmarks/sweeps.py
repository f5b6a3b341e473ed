"""Sweeps on the Optuna engine: workers and pruning, measured on multi-mnist.

    MTLKIT_DATA=/path/to/data python benchmarks/sweeps.py [--workers-limit 6000] [--limit 1000]
        [--epochs 3] [--out runs/bench-sweeps]

Two figures, each from runs on this machine in one call:

1. the same ``compare`` (ew, mgda-ub; 2 seeds; ``optim.lr`` at 2 values: 16 cells) on 1 worker
   and on 2 workers, one intra-op thread per trial either way, on the first ``--workers-limit``
   pairs: the wall-time ratio (ideally about 2 on 2 free cores; a machine shared with other work
   shows less, and so do cells so short that starting a worker and writing a cell's files weigh
   as much as its training: 1.01× at 1,000 pairs, 1.56× at 6,000 on 2 paused-idle cores), and
   whether the tables are identical (they must be: a cell's numbers do not depend on the worker);
2. ``tune`` of ``optim.lr`` over 6 values with the median pruner against the same search
   without pruning (the full grid): trial-epochs run by each, the values chosen and whether the
   test table changes.

The lenet trunk (with the demo config's trunk options) on the first ``--limit`` pairs keeps the
pruning figure to minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from timing import machine

from mtlkit.config import load_config
from mtlkit.workflows.compare import compare_methods
from mtlkit.workflows.sweeps import SweepOptions
from mtlkit.workflows.tune import tune_methods
from mtlkit.workflows.tune_space import parse_param

METHODS = ["ew", "mgda-ub"]
LEARNING_RATES = [0.1, 0.01]
TUNED = "optim.lr=0.3,0.1,0.03,0.01,0.003,0.001"


def _rows(folder: Path, name: str) -> list[dict]:
    """The summary's rows without the step-time ratio (a timing, not a result)."""
    rows = json.loads((folder / f"{name}.json").read_text())["rows"]
    return [{k: v for k, v in row.items() if k != "step_time"} for row in rows]


def workers_figure(config, out: Path) -> list[str]:
    """Markdown lines: compare on 1 and on 2 workers, wall times, ratio, identical tables."""
    walls = {}
    for workers in (1, 2):
        folder = out / f"compare-{workers}w"
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        compare_methods(
            config,
            folder,
            METHODS,
            seeds=2,
            tune={"optim.lr": LEARNING_RATES},
            sweep=SweepOptions(workers=workers, threads=1),
        )
        walls[workers] = time.perf_counter() - start
    same = _rows(out / "compare-1w", "compare") == _rows(out / "compare-2w", "compare")
    return [
        "| compare (16 cells, 1 thread per trial) | wall s |",
        "|---|---|",
        f"| 1 worker | {walls[1]:.1f} |",
        f"| 2 workers | {walls[2]:.1f} |",
        f"| speed-up (1 worker / 2 workers) | {walls[1] / walls[2]:.2f}× |",
        f"| tables identical | {'yes' if same else 'NO'} |",
    ]


def pruning_figure(config, out: Path) -> list[str]:
    """Markdown lines: tune with the median pruner against the full grid without pruning."""
    results = {}
    for pruner in ("none", "median"):
        folder = out / f"tune-{pruner}"
        shutil.rmtree(folder, ignore_errors=True)
        results[pruner] = tune_methods(
            config,
            folder,
            METHODS,
            [parse_param(TUNED)],
            seeds=2,
            pruner=pruner,
            sweep=SweepOptions(threads=1),
        )
    lines = [
        "| tune of optim.lr (6 values) | pruner none | pruner median |",
        "|---|---|---|",
    ]
    for full, pruned in zip(results["none"].studies, results["median"].studies):
        lines.append(f"| {full.subject}: chosen | {full.chosen_label} | {pruned.chosen_label} |")
        lines.append(
            f"| {full.subject}: trial-epochs (pruned trials) | {full.counts.trial_epochs} "
            f"({full.counts.pruned}) | {pruned.counts.trial_epochs} ({pruned.counts.pruned}) |"
        )
    run = {p: sum(s.counts.trial_epochs for s in r.studies) for p, r in results.items()}
    same = _rows(out / "tune-none", "tune") == _rows(out / "tune-median", "tune")
    lines += [
        f"| all studies: trial-epochs | {run['none']} | {run['median']} "
        f"({1 - run['median'] / run['none']:.0%} saved) |",
        f"| test table identical | | {'yes' if same else 'no'} |",
    ]
    return lines


def _config(limit: int, epochs: int):
    """The demo config with LeNet and 50-unit heads on the first ``limit`` pairs."""
    return load_config(
        "configs/multi-mnist.yaml",
        [
            "model.backbone=lenet",
            "model.head_hidden=50",
            f"data.limit={limit}",
            "data.val_fraction=0.1",
            "train.batch_size=32",
            f"train.epochs={epochs}",
            "train.progress=false",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workers-limit", type=int, default=6000, help="training pairs of the workers figure"
    )
    parser.add_argument(
        "--limit", type=int, default=1000, help="training pairs of the pruning figure"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-sweeps"))
    args = parser.parse_args()
    print(f"{machine()}\nmulti-mnist, lenet, {args.epochs} epochs\n")
    print(f"workers: the first {args.workers_limit} pairs")
    workers = workers_figure(_config(args.workers_limit, args.epochs), args.out)
    print("\n".join(workers) + "\n", flush=True)
    print(f"pruning: the first {args.limit} pairs")
    print("\n".join(pruning_figure(_config(args.limit, args.epochs), args.out)), flush=True)


if __name__ == "__main__":
    main()
