"""What the full table of ``pareto_set.py`` costs on this machine: one training step of each
method kind on the ``pareto-published`` protocol (LeNet, batch 256), measured, and the table's
cost worked out from it.

    python benchmarks/pareto_set_cost.py [--benchmark multi-mnist] [--limit 7680] [--rounds 2]
        [--epochs 100] [--out runs/pareto-set-cost]

Each kind (plain equal-weight training, the sweep's unit; COSMOS; PHN-LS; PHN-EPO; PaMaL) trains
one epoch on the first ``--limit`` samples of each split, ``--rounds`` times, the kinds
interleaved and their order rotated each round (a busy spell of a shared machine falls on all of
them). A hook times the training steps after the first (which pays for the first allocations):
process CPU seconds (all threads) and wall seconds per step; the medians over rounds are
reported. An epoch of the full protocol is ``ceil(108,000 / 256)`` = 422 such steps, plus the
validation pass over 12,000 images (forward only: a few per cent of an epoch, not counted).

The table: per benchmark, 13 trainings for the sweep (11 λ points and 2 single-task runs, the
latter counted as a plain training: they are a little cheaper, one head instead of two), plus
one training per set-learning method, each ``--epochs`` epochs.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import time
from pathlib import Path

from pareto_set import BENCHMARKS, PAPERS_EPOCHS, SET_METHODS, SWEEP_RUNS, _config
from timing import machine

from mtlkit.config import parse_config
from mtlkit.training import FitProgress
from mtlkit.training.hooks import Hook, StepState
from mtlkit.workflows import train

KINDS = ("ew", *SET_METHODS)
"""``ew``: the sweep's unit (its λ points train with fixed weights, as costly as equal ones)."""
TRAIN_SAMPLES = 108_000
BATCH = 256


class StepClock(Hook):
    """Process CPU and wall seconds of the training steps after the first."""

    name = "step-clock"

    def __init__(self) -> None:
        self.start: tuple[float, float] | None = None
        self.end: tuple[float, float] | None = None
        self.steps = 0

    def after_step(self, step: StepState, progress: FitProgress) -> None:
        now = (time.process_time(), time.perf_counter())
        if self.start is None:
            self.start = now
        else:
            self.end, self.steps = now, self.steps + 1

    def per_step(self) -> tuple[float, float]:
        """CPU and wall seconds per timed step."""
        if self.steps == 0:
            raise ValueError("--limit: give enough samples for at least 2 training steps")
        return tuple((b - a) / self.steps for a, b in zip(self.start, self.end, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", choices=BENCHMARKS, default="multi-mnist")
    parser.add_argument("--limit", type=int, default=7680, help="samples per split")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=PAPERS_EPOCHS, help="the table's epochs")
    parser.add_argument("--out", type=Path, default=Path("runs/pareto-set-cost"))
    args = parser.parse_args()
    print(machine(), flush=True)
    config_args = argparse.Namespace(epochs=1, limit=args.limit)
    samples: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    for r in range(args.rounds):
        for kind in KINDS[r % len(KINDS) :] + KINDS[: r % len(KINDS)]:
            clock = StepClock()
            raw = _config(args.benchmark, "sweep" if kind == "ew" else kind, 0, config_args)
            folder = args.out / kind
            shutil.rmtree(folder, ignore_errors=True)
            train(parse_config(raw), folder, hooks=[clock])
            samples[kind].append(clock.per_step())
            print(f"round {r + 1} {kind}: {clock.per_step()} (CPU, wall s per step)", flush=True)
    cpu = {k: statistics.median(c for c, _ in samples[k]) for k in KINDS}
    wall = {k: statistics.median(w for _, w in samples[k]) for k in KINDS}
    steps = math.ceil(TRAIN_SAMPLES / BATCH)
    print(
        f"\n{args.benchmark}, pareto-published, LeNet, batch {BATCH}: medians over {args.rounds} "
        f"interleaved rounds of {args.limit} samples; an epoch is {steps} steps"
    )
    print("| kind | CPU s / step | wall s / step | ÷ ew (CPU) | CPU s / epoch | wall s / epoch |")
    print("|---|---|---|---|---|---|")
    for k in KINDS:
        print(
            f"| {k} | {cpu[k]:.3f} | {wall[k]:.3f} | {cpu[k] / cpu['ew']:.2f} | "
            f"{cpu[k] * steps:.0f} | {wall[k] * steps:.0f} |"
        )
    trainings = {"ew": SWEEP_RUNS} | {k: 1 for k in SET_METHODS}
    per_benchmark = {
        clock: sum(n * seconds[k] for k, n in trainings.items()) * steps * args.epochs
        for clock, seconds in (("cpu", cpu), ("wall", wall))
    }
    print(
        f"\nthe table at {args.epochs} epochs: per benchmark {per_benchmark['cpu'] / 3600:.1f} "
        f"CPU hours ({per_benchmark['wall'] / 3600:.1f} wall hours at this run's share of the "
        f"machine); the sweep {SWEEP_RUNS * cpu['ew'] * steps * args.epochs / 3600:.1f} CPU "
        f"hours of it; all {len(BENCHMARKS)} benchmarks "
        f"{len(BENCHMARKS) * per_benchmark['cpu'] / 3600:.1f} CPU hours "
        f"({len(BENCHMARKS) * per_benchmark['wall'] / 3600:.1f} wall hours)"
    )


if __name__ == "__main__":
    main()
