"""Sharing architectures: multi-mnist accuracy and step time relative to ``hard``; the MMoE
paper's correlation sweep; the GradNorm toy at K tasks.

    OMP_NUM_THREADS=1 python benchmarks/architectures.py [--parts mnist timing correlation toy]

* ``mnist``: every architecture on multi-mnist (Sener's protocol), the seed CNN (the demo's
  backbone), ``ew``, SGD with the demo's settings for ``--epochs`` epochs on the first
  ``--limit`` samples of each split; test accuracy per task and parameters relative to ``hard``.
* ``timing``: one training step (``Trainer.train_step``: forward, K losses, the balancer's
  backward, SGD) of every architecture on the same batch of 256 multi-mnist-sized images, for
  ``ew`` and ``upgrad``; the architectures are timed round-robin (the order rotated every round)
  in one run and each median is divided by ``hard``'s median with the same method.
* ``correlation``: ``synthetic-correlation`` at correlation 1.0, 0.9, 0.7, 0.5 for ``hard``,
  ``mmoe`` and ``ple`` (experts are copies of the trunk, an MLP of ``--hidden`` units, as in the
  paper's setting), ``--seeds`` seeds (each seed its own data and initialisation); mean test R²
  of the two tasks, mean ± standard deviation over the seeds.
* ``toy``: ``gradnorm-toy`` with ``--tasks`` tasks, hard sharing on the paper's 4-layer MLP of
  100 units, for ``ew``, ``gradnorm``, ``uw``, ``famo``, ``upgrad``; the test RMSE of each task
  divided by its scale σₖ (scale-free), mean and worst over the tasks.

Everything is seeded; the printed tables are the whole output. Sizes are options: the defaults
are small enough for a shared 2-core machine (about 20 minutes with every part).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from typing import Any

from timing import add_timing_arguments, interleaved_medians, timing_setup

from mtlkit.config import parse_config
from mtlkit.data import TensorBatches
from mtlkit.data.benchmarks.synthetic import toy_scales
from mtlkit.models import ARCHITECTURES
from mtlkit.training import Trainer
from mtlkit.workflows import train
from mtlkit.workflows.build import (
    build_balancer,
    build_model,
    build_optimization,
    build_tasks,
    load_data,
)

DEMO = {
    "data": {"benchmark": "multi-mnist", "protocol": "sener", "val_fraction": 0.1},
    "model": {"backbone": "cnn"},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "cosine"},
}
"""The demo's experiment (configs/multi-mnist.yaml), less its epochs."""
TOY_METHODS = ("ew", "gradnorm", "uw", "famo", "upgrad")


def _config(base: dict[str, Any], **sections: dict[str, Any]) -> Any:
    raw = {key: dict(value) for key, value in base.items()}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


def _parameters(config: Any, data: Any) -> int:
    model = build_model(config, data.input_shape, build_tasks(config, data.tasks))
    return sum(p.numel() for p in model.parameters())


def mnist(epochs: int, limit: int | None) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for name in ARCHITECTURES:
            config = _config(
                DEMO,
                data={"limit": limit},
                model={"sharing": name},
                train={"epochs": epochs, "progress": False},
            )
            result = train(config, f"{out}/{name}")
            params = _parameters(config, load_data(config))
            rows.append((name, {t: r.accuracy for t, r in result.test.items()}, params))
            print(f"done {name}", flush=True)
    hard = rows[0][2]
    print(f"\nmulti-mnist (sener), seed CNN, ew, {epochs} epochs, limit {limit}")
    print("| sharing | test acc left | test acc right | mean | parameters vs hard |")
    print("|---|---|---|---|---|")
    for name, accuracy, params in rows:
        mean = statistics.mean(accuracy.values())
        print(
            f"| {name} | {accuracy['left']:.4f} | {accuracy['right']:.4f} | {mean:.4f} | "
            f"{params / hard:.2f}× |"
        )


def timing(rounds: int, clock) -> None:
    config = _config(DEMO, data={"limit": 256})
    data = load_data(config)
    batch = next(iter(TensorBatches(data.train, 256)))
    trainers = {}
    for method in ("ew", "upgrad"):
        for name in ARCHITECTURES:
            run = _config(DEMO, model={"sharing": name}, balancer={"name": method})
            tasks = build_tasks(run, data.tasks)
            model = build_model(run, data.input_shape, tasks)
            balancer = build_balancer(run, len(tasks))
            optimizer, _ = build_optimization(run, model, balancer)
            trainers[method, name] = Trainer(model, tasks, balancer, optimizer, progress=False)
    steps = {key: lambda _, t=trainer: t.train_step(batch) for key, trainer in trainers.items()}
    median = interleaved_medians(steps, rounds, clock)
    print(f"\nstep time relative to hard (seed CNN, batch 256, K = 2, median of {rounds} rounds)")
    print("| sharing | ew | upgrad |")
    print("|---|---|---|")
    for name in ARCHITECTURES:
        cells = [f"{median[m, name] / median[m, 'hard']:.2f}×" for m in ("ew", "upgrad")]
        print(f"| {name} | " + " | ".join(cells) + " |")


def _regression(config: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        return train(config, f"{out}/run").test


def correlation(seeds: int, epochs: int, hidden: int, limit: int | None) -> None:
    sharing = {
        "hard": {"sharing": "hard"},
        "mmoe": {"sharing": "mmoe", "sharing_options": {"expert": "trunk", "experts": 4}},
        "ple": {
            "sharing": "ple",
            "sharing_options": {"expert": "trunk", "experts": 2, "task_experts": 1},
        },
    }
    table: dict[tuple[str, float], list[float]] = {}
    for p in (1.0, 0.9, 0.7, 0.5):
        for name, model in sharing.items():
            for seed in range(seeds):
                config = parse_config(
                    {
                        "seed": seed,
                        "data": {
                            "benchmark": "synthetic-correlation",
                            "correlation": p,
                            "limit": limit,
                            "val_fraction": 0.1,
                        },
                        "model": {
                            "backbone": "mlp",
                            "backbone_options": {"hidden": [hidden]},
                            "head_hidden": 8,
                            **model,
                        },
                        "optim": {"name": "adam", "lr": 0.003},
                        "train": {"epochs": epochs, "batch_size": 128, "progress": False},
                    }
                )
                reports = _regression(config)
                table.setdefault((name, p), []).append(
                    statistics.mean(r.r2 for r in reports.values())
                )
            print(f"done {name} p={p}", flush=True)
    print(f"\nsynthetic-correlation: mean test R² of both tasks, {seeds} seeds (mean ± std)")
    print(f"MLP trunk [{hidden}], heads with 8 hidden units, Adam 0.003, {epochs} epochs")
    print("| correlation | " + " | ".join(sharing) + " |")
    print("|---" * (len(sharing) + 1) + "|")
    for p in (1.0, 0.9, 0.7, 0.5):
        cells = []
        for name in sharing:
            values = table[name, p]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"| {p} | " + " | ".join(cells) + " |")


def toy(num_tasks: int, epochs: int, seeds: int, limit: int | None) -> None:
    rows = []
    for method in TOY_METHODS:
        means, worsts = [], []
        for seed in range(seeds):
            config = parse_config(
                {
                    "seed": seed,
                    "data": {
                        "benchmark": "gradnorm-toy",
                        "num_tasks": num_tasks,
                        "limit": limit,
                        "val_fraction": 0.1,
                    },
                    "model": {
                        "backbone": "mlp",
                        "backbone_options": {"hidden": [100, 100, 100, 100]},
                    },
                    "balancer": {"name": method},
                    "optim": {"name": "adam", "lr": 0.001},
                    "train": {"epochs": epochs, "batch_size": 128, "progress": False},
                }
            )
            reports = _regression(config)
            sigma = toy_scales(num_tasks)
            relative = [reports[f"t{k + 1}"].rmse / sigma[k] for k in range(num_tasks)]
            means.append(statistics.mean(relative))
            worsts.append(max(relative))
        rows.append((method, statistics.mean(means), statistics.mean(worsts)))
        print(f"done {method}", flush=True)
    print(f"\ngradnorm-toy, K = {num_tasks}, hard sharing, MLP 4×100, Adam 0.001, {epochs} epochs,")
    print(f"{seeds} seed(s): test RMSE / σₖ (lower is better)")
    print("| method | mean over tasks | worst task |")
    print("|---|---|---|")
    for method, mean, worst in rows:
        print(f"| {method} | {mean:.4f} | {worst:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        nargs="*",
        default=["mnist", "timing", "correlation", "toy"],
        choices=["mnist", "timing", "correlation", "toy"],
    )
    parser.add_argument("--epochs", type=int, default=3, help="multi-mnist epochs")
    parser.add_argument("--limit", type=int, default=10_000, help="multi-mnist samples per split")
    parser.add_argument("--rounds", type=int, default=8, help="timing rounds")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--synthetic-epochs", type=int, default=10)
    parser.add_argument("--synthetic-limit", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=32, help="correlation: trunk width")
    parser.add_argument("--tasks", type=int, default=10, help="gradnorm-toy: K")
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    if "mnist" in args.parts:
        mnist(args.epochs, args.limit)
    if "timing" in args.parts:
        timing(args.rounds, clock)
    if "correlation" in args.parts:
        correlation(args.seeds, args.synthetic_epochs, args.hidden, args.synthetic_limit)
    if "toy" in args.parts:
        toy(args.tasks, args.synthetic_epochs, args.seeds, args.synthetic_limit)


if __name__ == "__main__":
    main()
