"""``weights_every``'s accuracy cost: a Gramian method solved every n steps against the exact one
(n = 1) on ``gradnorm-toy``, K regression tasks with scales 1 to 100.

    python benchmarks/weights_every.py [--tasks 100] [--epochs 4] [--every 1,5,10,20]
        [--methods upgrad,imtl-g]

Hard sharing on GradNorm's MLP (4 × 100 units), Adam 0.001, batch 128, the toy's training split
(9 000 samples after the validation carve); every variant is built from the same config (same
initial weights, same data order) with ``balancer: {name: <method>, weights_every: n}``, and
``ew`` is the reference without a gradient method. Epochs are interleaved (epoch e of every
variant, the order rotated each epoch). Accuracy: the test RMSE of each task over its scale σₖ
after the last epoch (scale-free; mean and worst over the K tasks). Time: the median epoch time
over the same method's exact variant and over ``ew``'s.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from timing import add_timing_arguments, timing_setup

from mtlkit.config import ExperimentConfig, parse_config
from mtlkit.data import MultiTaskData
from mtlkit.data.benchmarks.synthetic import toy_scales
from mtlkit.training import Trainer
from mtlkit.workflows.build import (
    build_balancer,
    build_model,
    build_tasks,
    eval_batches,
    load_data,
    train_batches,
)
from mtlkit.workflows.trainer import build_trainer


def _config(num_tasks: int, epochs: int, method: str, every: int) -> ExperimentConfig:
    balancer = {"name": method} | ({"weights_every": every} if every > 1 else {})
    return parse_config(
        {
            "data": {"benchmark": "gradnorm-toy", "num_tasks": num_tasks, "val_fraction": 0.1},
            "model": {"backbone": "mlp", "backbone_options": {"hidden": [100, 100, 100, 100]}},
            "balancer": balancer,
            "optim": {"name": "adam", "lr": 0.001},
            "train": {"epochs": epochs, "batch_size": 128, "progress": False},
        }
    )


def _trainer(config: ExperimentConfig, data: MultiTaskData) -> Trainer:
    tasks = build_tasks(config, data.tasks)
    model = build_model(config, data.input_shape, tasks)
    balancer = build_balancer(config, len(tasks))
    return build_trainer(config, model, tasks, balancer, torch.device("cpu"))


def measure(
    num_tasks: int, epochs: int, everies: list[int], methods: list[str], clock: Callable[[], float]
) -> list[str]:
    """Markdown rows: per variant, test RMSE / σₖ (mean, worst) and epoch-time ratios."""
    variants = [("ew", 1)] + [(m, n) for m in methods for n in everies]
    configs = {v: _config(num_tasks, epochs, *v) for v in variants}
    data = load_data(configs["ew", 1])
    trainers = {v: _trainer(config, data) for v, config in configs.items()}
    times: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    for epoch in range(epochs):
        shift = epoch % len(variants)
        for v in variants[shift:] + variants[:shift]:
            batches = train_batches(configs[v], data.train, epoch)
            start = clock()
            trainers[v].train_epoch(batches, epoch)
            times[v].append(clock() - start)
            if trainers[v].scheduler is not None:
                trainers[v].scheduler.step()
    sigma = toy_scales(num_tasks)
    median = {v: statistics.median(t) for v, t in times.items()}
    rows = [
        f"gradnorm-toy, K = {num_tasks}, MLP 4×100, Adam 0.001, batch 128, {epochs} epochs "
        f"({len(data.train)} training samples); test RMSE / σₖ over the K tasks",
        "",
        "| method | weights_every | mean RMSE / σₖ | worst task | epoch time vs exact | vs ew |",
        "|---|---|---|---|---|---|",
    ]
    for method, every in variants:
        reports = trainers[method, every].evaluate(eval_batches(configs[method, every], data.test))
        relative = [reports[f"t{k + 1}"].rmse / sigma[k] for k in range(num_tasks)]
        seconds = median[method, every]
        rows.append(
            f"| {method} | {every} | {statistics.mean(relative):.4f} | {max(relative):.4f} | "
            f"{seconds / median[method, 1]:.2f}× | {seconds / median['ew', 1]:.2f}× |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100, help="gradnorm-toy: K (at most 100)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--every", default="1,5,10,20")
    parser.add_argument("--methods", default="upgrad,imtl-g")
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    everies = [int(n) for n in args.every.split(",")]
    if everies[0] != 1:
        parser.error("--every must start with 1 (the exact method every ratio refers to)")
    rows = measure(args.tasks, args.epochs, everies, args.methods.split(","), clock)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
