"""Time to accuracy: training time for the demo config to reach a mean test accuracy (96 %) on
multi-mnist, mtlkit against a hand-written loop.

    python benchmarks/time_to_accuracy.py [--config configs/multi-mnist.yaml] [--target 0.96]
        [--set train.precision=bf16 ...]

Both sides build the same network (same initial weights), data, optimizer and cosine schedule
from the config (``mtlkit.workflows.build``). mtlkit trains with ``Trainer.train_epoch`` as the
CLI does (with the config's ``channels_last``, ``precision``, ``compile``); the plain loop is
``benchmarks/overhead.py``'s. Epochs alternate (plain, mtlkit, ...); after each, both models are
evaluated on the test split (not timed). The figure is each side's training time until its mean
test accuracy first reaches the target, and their ratio, plain / mtlkit.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
from overhead import plain_epoch
from timing import add_timing_arguments, timing_setup

from mtlkit.config import load_config
from mtlkit.training import evaluate
from mtlkit.workflows.build import (
    build_balancer,
    build_model,
    build_optimization,
    build_tasks,
    eval_batches,
    load_data,
    train_batches,
)
from mtlkit.workflows.trainer import build_trainer


def measure(
    config_path: str, overrides: list[str], target: float, clock: Callable[[], float]
) -> list[str]:
    """Markdown rows: epochs and training time to ``target`` for the plain loop and mtlkit."""
    config = load_config(config_path, [*overrides, "train.progress=false"])
    data = load_data(config)
    tasks = build_tasks(config, data.tasks)
    template = build_model(config, data.input_shape, tasks)
    balancer = build_balancer(config, len(tasks))

    plain_model = copy.deepcopy(template)
    plain_opt, plain_sched = build_optimization(config, plain_model, balancer)
    model = copy.deepcopy(template)
    trainer = build_trainer(config, model, tasks, balancer, torch.device("cpu"))

    def accuracy(net: torch.nn.Module, **kwargs) -> float:
        reports = evaluate(
            net, tasks, eval_batches(config, data.test), torch.device("cpu"), **kwargs
        )
        return sum(float(r.summary()["accuracy"]) for r in reports.values()) / len(reports)

    spent = {"plain": 0.0, "mtlkit": 0.0}
    reached: dict[str, tuple[int, float, float] | None] = {"plain": None, "mtlkit": None}
    for epoch in range(1, config.train.epochs + 1):
        start = clock()
        plain_epoch(plain_model, plain_opt, data.train, config.train.batch_size, epoch)
        plain_sched.step()
        spent["plain"] += clock() - start
        start = clock()
        trainer.train_epoch(train_batches(config, data.train, epoch), epoch)
        trainer.scheduler.step()
        spent["mtlkit"] += clock() - start
        scores = {
            "plain": accuracy(plain_model),
            "mtlkit": accuracy(
                model, memory_format=trainer.memory_format, precision=trainer.precision
            ),
        }
        for side, score in scores.items():
            if reached[side] is None and score >= target:
                reached[side] = (epoch, spent[side], score)
        ratio = spent["mtlkit"] / spent["plain"]
        print(
            f"epoch {epoch}: mean test accuracy {scores}, mtlkit/plain time {ratio:.3f}", flush=True
        )
        if all(r is not None for r in reached.values()):
            break
    settings = ", ".join(overrides) or "as in the config"
    rows = [
        f"| {config.name}: to {target:.0%} mean test accuracy ({settings}) | epochs | "
        "training time, plain = 1 |",
        "|---|---|---|",
    ]
    for side in ("plain", "mtlkit"):
        hit = reached[side]
        if hit is None:
            rows.append(f"| {side} | not reached in {config.train.epochs} | — |")
        else:
            plain_time = reached["plain"][1] if reached["plain"] else float("nan")
            rows.append(f"| {side} | {hit[0]} ({hit[2]:.4f}) | {hit[1] / plain_time:.3f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/multi-mnist.yaml")
    parser.add_argument("--target", type=float, default=0.96)
    parser.add_argument("--set", action="append", default=[], help="a config override")
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    start = time.perf_counter()
    print("\n".join(measure(args.config, args.set, args.target, clock)))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
