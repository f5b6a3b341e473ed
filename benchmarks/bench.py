"""``make bench``: every performance benchmark in one run, written to ``benchmarks/RESULTS.md``.

    python benchmarks/bench.py [--out benchmarks/RESULTS.md] [--quick] [--skip time-to-accuracy]

Sections, in order: framework overhead, data pipeline, many tasks, mixed precision and compile,
time to accuracy. Every figure is a ratio of medians measured interleaved within its section, on
one intra-op thread. The file is rewritten after each section, so an interrupted run keeps what
it measured. ``--quick`` shrinks every section (a smoke run, figures not for quoting).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import data_pipeline
import many_tasks
import overhead
import precision_compile
import time_to_accuracy
import torch
from timing import machine

from mtlkit.data import Split, load_benchmark

ROOT = Path(__file__).resolve().parent.parent


def _sections(quick: bool) -> dict[str, Callable[[], list[str]]]:
    clock = time.perf_counter
    limit = 1280 if quick else 6400
    rounds = 1 if quick else 5

    def mnist(n: int) -> Split:
        return load_benchmark("multi-mnist", protocol="sener", seed=0, limit=n).train

    def run_overhead() -> list[str]:
        medians = overhead.measure(mnist(limit), "lenet", 256, rounds, clock)
        rows = [f"| lenet, batch 256, {limit} samples | plain / mtlkit epoch time |", "|---|---|"]
        rows += [
            f"| {n} | {medians['plain'] / s:.3f} |" for n, s in medians.items() if n != "plain"
        ]
        return rows

    def run_many_tasks() -> list[str]:
        r = 1 if quick else 2
        cnn = many_tasks.measure([2, 10] if quick else [2, 10, 40], 64, r, clock, ["cnn"])
        ks = [2, 10] if quick else [2, 5, 10, 20, 40, 100]
        return cnn + many_tasks.measure(ks, 64, r, clock, ["mlp"])

    def run_precision() -> list[str]:
        data = load_benchmark("multi-mnist", protocol="sener", seed=0, limit=640 if quick else 2560)
        n = 500 if quick else 5000
        test = Split(data.test.inputs[:n], {t: y[:n] for t, y in data.test.targets.items()})
        labels = [label for label in precision_compile.VARIANTS if label != "upgrad bf16"]
        return precision_compile.measure(data.train, test, 2 if quick else 3, clock, labels)

    def run_time_to_accuracy() -> list[str]:
        config = str(ROOT / "configs" / "multi-mnist.yaml")
        overrides = ["data.limit=2000", "train.epochs=1"] if quick else []
        return time_to_accuracy.measure(config, overrides, 0.96, clock)

    return {
        "overhead": run_overhead,
        "data-pipeline": lambda: data_pipeline.measure(mnist(limit * 2), 256, rounds, clock),
        "many-tasks": run_many_tasks,
        "precision-compile": run_precision,
        "time-to-accuracy": run_time_to_accuracy,
    }


TITLES = {
    "overhead": "Framework overhead (target ≥ 0.97)",
    "data-pipeline": "Data pipeline (target ≥ 10×)",
    "many-tasks": "Many tasks",
    "precision-compile": "Mixed precision and torch.compile",
    "time-to-accuracy": "Time to 96 % mean test accuracy (demo config)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", action="append", default=[], choices=list(TITLES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python benchmarks/bench.py`); see docs/performance.md for what "
        "each section measures.",
        "",
        f"Machine: {machine()}.",
    ]
    if args.quick:
        lines += ["", "**Quick smoke run: sizes shrunk, figures not for quoting.**"]
    out = Path(args.out)
    for name, run in _sections(args.quick).items():
        if name in args.skip:
            continue
        start = time.perf_counter()
        rows = run()
        lines += ["", f"## {TITLES[name]}", "", *rows, "", f"({time.perf_counter() - start:.0f} s)"]
        out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines[-len(rows) - 4 :]), flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    out.write_text("\n".join([*lines, "", f"Load average at the end: {load}."]) + "\n")


if __name__ == "__main__":
    main()
