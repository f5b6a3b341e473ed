"""Time an epoch on a generated table of a million rows (tables at scale, on CPU).

    python benchmarks/large_table.py [--rows 1000000] [--epochs 2] [--batch-size 1024]
                                     [--format parquet] [--threads N]

The table has 20 numeric and 3 categorical feature columns (4, 8 and 16 categories) and three
tasks (binary, classification, regression) with labels missing in 10-30 % of the rows. It is
written to a temporary file, then read and preprocessed once into tensors held in memory (timed),
and trained with equal weighting on an MLP [256, 128]. Each epoch is timed twice in the same run:
through mtlkit's ``Trainer`` (masked losses, balancer, unlabelled-step flags) and as a bare
PyTorch loop over the same tensors (index_select batches, summed masked losses, one backward), so
the ratio shows what mtlkit's loop costs on top of the arithmetic. Peak memory (max RSS) is
printed too.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from timing import add_timing_arguments, timing_setup

from mtlkit.config import parse_config
from mtlkit.training import Trainer
from mtlkit.workflows import build

NUMERIC = 20
LEVELS = (4, 8, 16)
"""The categories of each categorical column."""


def generate(rows: int, seed: int = 0) -> pd.DataFrame:
    """The table: features, and labels that depend on them, some left empty."""
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(rows, NUMERIC)).astype(np.float32)
    frame = pd.DataFrame({f"x{j}": numbers[:, j] for j in range(NUMERIC)})
    for j, levels in enumerate(LEVELS):
        frame[f"c{j}"] = np.char.add(f"c{j}_", rng.integers(0, levels, rows).astype(str))
    logit = numbers[:, 0] - numbers[:, 1] + 0.5 * numbers[:, 2]
    frame["churned"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame["plan"] = np.array(["basic", "plus", "premium"])[
        np.digitize(numbers[:, 3] + 0.5 * numbers[:, 4], [-0.5, 0.5])
    ]
    frame["spend"] = 50 + 10 * numbers[:, 5] + 5 * numbers[:, 6] ** 2 + rng.normal(0, 2, rows)
    for column, share in (("churned", 0.1), ("plan", 0.2), ("spend", 0.3)):
        frame.loc[rng.random(rows) < share, column] = None
    return frame


def bare_epoch(trainer: Trainer, batches) -> None:
    """The same epoch without mtlkit's loop: batches, masked losses, their sum, one backward."""
    model, tasks, optimizer = trainer.model, trainer.tasks, trainer.optimizer
    model.train()
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        outputs = model(batch.inputs)
        loss = sum(
            task.loss(outputs[task.name], batch.targets[task.name], batch.masks[task.name])
            for task in tasks
        )
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"table.{args.format}"
        frame = generate(args.rows)
        if args.format == "parquet":
            frame.to_parquet(path)
        else:
            frame.to_csv(path, index=False)
        del frame
        config = parse_config(
            {
                "name": "large-table",
                "data": {"table": str(path)},
                "tasks": {
                    "churn": {"type": "binary", "column": "churned"},
                    "plan": {"type": "classification", "column": "plan"},
                    "spend": {"type": "regression", "column": "spend", "loss": "huber"},
                },
                "model": {"backbone": "mlp", "backbone_options": {"hidden": [256, 128]}},
                "optim": {"name": "adam", "lr": 0.001},
                "train": {"batch_size": args.batch_size, "progress": False, "device": "cpu"},
            }
        )
        start = clock()
        data = build.load_data(config)
        print(
            f"read and preprocess {args.rows} rows ({args.format}): {clock() - start:.1f} s; "
            f"inputs {tuple(data.train.inputs.shape)} float32 in memory"
        )
    tasks = build.build_tasks(config, data.tasks)
    model = build.build_model(config, data.input_shape, tasks)
    balancer = build.build_balancer(config, len(tasks))
    optimizer, _ = build.build_optimization(config, model, balancer)
    trainer = Trainer(model, tasks, balancer, optimizer, progress=False)
    steps = len(build.train_batches(config, data.train, 0))
    for epoch in range(1, args.epochs + 1):
        start = clock()
        trainer.train_epoch(build.train_batches(config, data.train, epoch), epoch)
        ours = clock() - start
        start = clock()
        bare_epoch(trainer, build.train_batches(config, data.train, epoch))
        bare = clock() - start
        print(
            f"epoch {epoch}: {steps} steps of {args.batch_size} rows: mtlkit {ours:.1f} s, "
            f"bare PyTorch loop {bare:.1f} s (ratio {ours / bare:.2f})"
        )
    start = clock()
    reports = trainer.evaluate(build.eval_batches(config, data.test))
    print(f"evaluate {len(data.test)} test rows: {clock() - start:.1f} s")
    for name, report in reports.items():
        print(f"  {name}: " + "  ".join(f"{k} {v:.4f}" for k, v in report.summary().items()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak memory (max RSS): {peak:.2f} GiB")


if __name__ == "__main__":
    main()
