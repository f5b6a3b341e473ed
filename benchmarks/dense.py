"""Per-pixel multi-task learning on ``multi-mnist-dense``: single-task vs ew vs three gradient
methods, each at its tuned learning rate, over seeds; Δm% over all nine metrics ± CI and the
time per epoch. Writes benchmarks/RESULTS-dense.md.

    python benchmarks/dense.py [--out runs/bench-dense] [--seeds 3] [--epochs 3] \\
        [--methods ew,mgda,pcgrad,cagrad] [--lrs 0.003,0.001] [--limit 2000]

It is the ``mtlkit compare`` workflow on ``configs/multi-mnist-dense.yaml`` (SegNet trunk, hard
sharing, Adam): resumable and runnable in parts. Every finished run is kept in ``--out`` and
reused, so ``--seeds 1`` now and ``--seeds 3`` later trains only the new seeds, and a method
added to ``--methods`` trains only its own runs (the baselines are shared). On 2 shared CPU
cores the defaults take about half an hour; on a GPU add ``--device cuda`` and raise
``--epochs`` and ``--limit``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from mtlkit.config import load_config
from mtlkit.workflows.compare import compare_methods
from mtlkit.workflows.comparison import MethodComparison

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "multi-mnist-dense.yaml"
RESULTS = Path(__file__).resolve().parent / "RESULTS-dense.md"


def _cpu() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    names = [line.split(":", 1)[1].strip() for line in lines.splitlines() if "Model name" in line]
    return names[0] if names else "unknown CPU"


def _epoch_seconds(out_dir: Path, label: str, steps: int) -> float:
    """The median over a method's finished runs of their median step time, times the steps of
    one epoch."""
    runs = sorted((out_dir / "cells").glob(f"{label}-*/metrics.json"))
    return statistics.median(json.loads(p.read_text())["step_seconds"] for p in runs) * steps


def _markdown(result: MethodComparison, args: argparse.Namespace, steps: int, seconds: float):
    level = f"{round(result.confidence * 100)} % CI"
    tasks = list(result.metrics)
    header = ["method", "lr chosen", f"Δm% ± {level}"]
    header += [f"{task} {result.metrics[task]}" for task in tasks]
    header += ["step time / ew", "s / epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result.rows:
        cells = [
            row.method,
            row.chosen,
            f"{row.delta_m.mean:+.2f} ± {row.delta_m.half_width:.2f}",
            *(f"{row.test[t].mean:.4f} ± {row.test[t].half_width:.4f}" for t in tasks),
            f"{row.step_time:.2f}×",
            f"{_epoch_seconds(result.out_dir, row.method, steps):.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    singles = [
        "single-task",
        ", ".join(f"{t}: {b.chosen}" for t, b in result.baselines.items()),
        "0 (reference)",
        *(
            f"{result.baselines[t].test.mean:.4f} ± {result.baselines[t].test.half_width:.4f}"
            for t in tasks
        ),
        "—",
        "—",
    ]
    lines.append("| " + " | ".join(singles) + " |")
    machine = (
        f"{_cpu()}, torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s); "
        f"load average at the end {', '.join(f'{v:.1f}' for v in _load())}"
    )
    return "\n".join(
        [
            "# Per-pixel tasks on multi-mnist-dense",
            "",
            "Written by `python benchmarks/dense.py "
            + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None and k != "out")
            + "`; see docs/dense.md.",
            "",
            f"Machine: {machine} (shared with other jobs: read the times as ratios).",
            "",
            f"SegNet trunk (width 16, depth 2), hard sharing, Adam, {args.epochs} epochs of "
            f"{steps} steps (batch 64); seeds {', '.join(map(str, result.seeds))}; each method "
            "and each single-task baseline at the learning rate with the best mean validation "
            "score. Δm% averages the signed relative change of all nine metrics (mIoU, pixel "
            "accuracy, absolute and relative depth error, mean and median angle, % within "
            "11.25°, 22.5° and 30°) against the single-task runs of the same seed; positive: "
            "multi-task better. The task columns give each task's primary metric.",
            "",
            *lines,
            "",
            f"({seconds:.0f} s for the runs trained now: {result.trained}; full report: "
            f"{_shown(result.out_dir / 'report.md')})",
            "",
        ]
    )


def _shown(path: Path) -> Path:
    """``path`` relative to the repository when it lies inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _load() -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-dense")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--methods", default="ew,mgda,pcgrad,cagrad")
    parser.add_argument("--lrs", default="0.003,0.001")
    parser.add_argument("--limit", type=int, default=2000, help="training scenes per seed")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    overrides = [
        f"train.epochs={args.epochs}",
        f"data.limit={args.limit}",
        f"train.device={args.device}",
        "train.progress=false",
    ]
    config = load_config(CONFIG, overrides)
    lrs = [float(value) for value in args.lrs.split(",")]
    start = time.perf_counter()
    result = compare_methods(
        config,
        args.out,
        args.methods.split(","),
        seeds=args.seeds,
        tune={"optim.lr": lrs},
    )
    seconds = time.perf_counter() - start
    steps = -(-min(args.limit, 3600) // config.train.batch_size)
    text = _markdown(result, args, steps, seconds)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
