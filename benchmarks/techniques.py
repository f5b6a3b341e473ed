"""Each practitioner's technique against the plain run on multi-mnist, and voting over views.

    python benchmarks/techniques.py [--epochs 3] [--seeds 0,1,2] [--limit N] [--only a b ...]

Part 1: every technique of ``TECHNIQUES`` is one config change to the plain run (LeNet, equal
weighting, SGD, cosine schedule). Per seed, the two single-task runs that distillation learns
from are trained first (``<out>/seed<S>/teachers/single-<task>``, what ``mtlkit baselines``
trains); then every technique. Each task's test accuracy and ECE is printed as the mean over
seeds and the paired difference to the plain run of the same seed, mean ± 95 % CI
(Student's t over the seeds).

Part 2: the run trained with input noise is evaluated on the test split with M = 1, 5 and 10
noisy views of each image (the same noise family), combined by vote and by mean probability;
the evaluation time is a ratio to M = 1, timed round-robin in one process.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from mtlkit.config import parse_config
from mtlkit.training import Views, evaluate
from mtlkit.workflows import restore_run, train
from mtlkit.workflows.build import build_noise, eval_batches, load_data

NOISE = {"gaussian": 0.1, "shift": 2}
"""The input noise of the noise techniques and of the evaluation views."""

TECHNIQUES: dict[str, dict[str, Any]] = {
    "plain": {},
    "label smoothing 0.1": {"tasks": {"label_smoothing": 0.1}},
    "focal γ=2": {"tasks": {"focal_gamma": 2.0}},
    "inverse class frequency": {"tasks": {"instance_weights": "inverse_frequency"}},
    "temperature (fit on val)": {"tasks": {"temperature": "fit"}},
    "distill from single-task (α=.5, T=2)": {
        "tasks": {"distill": {"teacher": "TEACHERS", "alpha": 0.5, "temperature": 2.0}}
    },
    "self-distill EMA (α=.5, T=2)": {
        "tasks": {"distill": {"teacher": "ema", "alpha": 0.5, "temperature": 2.0}}
    },
    "self-distill EMA, decay .99": {
        "tasks": {
            "distill": {"teacher": "ema", "alpha": 0.5, "temperature": 2.0, "ema_decay": 0.99}
        }
    },
    "L2 1e-4 trunk+heads": {"regularization": {"trunk": {"l2": 1e-4}, "heads": {"l2": 1e-4}}},
    "L1 1e-5 trunk": {"regularization": {"trunk": {"l1": 1e-5}}},
    "noise (gauss .1, shift 2)": {"noise": NOISE},
    "noise per task": {"noise": {**NOISE, "per_task": True}},
    "batch norm": {"model": {"backbone_options": {"batch_norm": True}}},
}

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262}
"""Student's t quantile 0.975 by degrees of freedom (the CI of a mean over n seeds: n − 1)."""


def _raw(args: argparse.Namespace, seed: int, change: dict[str, Any], teachers: Path) -> dict:
    raw: dict[str, Any] = {
        "name": "techniques",
        "seed": seed,
        "data": {"benchmark": "multi-mnist", "protocol": "sener", "limit": args.limit},
        "model": {"backbone": args.backbone},
        "optim": {"name": "sgd", "lr": args.lr, "momentum": 0.9},
        "schedule": {"name": "cosine"},
        "train": {"epochs": args.epochs, "progress": False, "device": "cpu"},
    }
    for section, values in json.loads(json.dumps(change)).items():
        raw.setdefault(section, {}).update(values)
    distill = raw.get("tasks", {}).get("distill")
    if distill and distill.get("teacher") == "TEACHERS":
        distill["teacher"] = str(teachers)
    return raw


def _ci(values: list[float]) -> str:
    """``mean ± half-width`` of the 95 % CI over seeds (± n/a with one seed)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:+.4f}"
    half = T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:+.4f} ± {half:.4f}"


def train_all(args: argparse.Namespace, out: Path) -> dict[str, dict[int, dict]]:
    """technique -> seed -> task -> {accuracy, ece}."""
    results: dict[str, dict[int, dict]] = {name: {} for name in args.only}
    for seed in args.seeds:
        teachers = out / f"seed{seed}" / "teachers"
        if any("distill from" in name for name in args.only):
            for task in ("left", "right"):
                if not (teachers / f"single-{task}" / "best.pt").is_file():
                    raw = _raw(args, seed, {"tasks": {"include": [task]}}, teachers)
                    train(parse_config(raw), teachers / f"single-{task}")
        for name in args.only:
            folder = out / f"seed{seed}" / name.replace(" ", "_").replace("/", "_")
            start = time.perf_counter()
            finished = folder / "metrics.json"
            if finished.is_file():  # trained by an earlier call with the same --out
                test = json.loads(finished.read_text())["test"]
            else:
                config = parse_config(_raw(args, seed, TECHNIQUES[name], teachers))
                test = {t: r.to_dict() for t, r in train(config, folder).test.items()}
            results[name][seed] = {
                task: {"accuracy": report["accuracy"], "ece": report["ece"]}
                for task, report in test.items()
            }
            print(
                f"seed {seed} {name}: {results[name][seed]} ({time.perf_counter() - start:.0f}s)",
                flush=True,
            )
    return results


def print_techniques(args: argparse.Namespace, results: dict[str, dict[int, dict]]) -> None:
    seeds, tasks = args.seeds, ("left", "right")
    print(
        f"\n# multi-mnist (sener), {args.backbone}, {args.epochs} epochs, SGD lr {args.lr} "
        f"cosine, seeds {seeds}, limit {args.limit}; Δ = technique − plain, same seed, "
        "mean ± 95 % CI\n"
    )
    head = " | ".join(f"{t} acc | Δ {t} acc | {t} ECE | Δ {t} ECE" for t in tasks)
    print(f"| technique | {head} |")
    print("|---" * (1 + 4 * len(tasks)) + "|")
    for name, by_seed in results.items():
        cells = []
        for task in tasks:
            for metric in ("accuracy", "ece"):
                values = [by_seed[s][task][metric] for s in seeds]
                deltas = [
                    by_seed[s][task][metric] - results["plain"][s][task][metric] for s in seeds
                ]
                cells.append(f"{statistics.fmean(values):.4f}")
                cells.append("—" if name == "plain" else _ci(deltas))
        print(f"| {name} | {' | '.join(cells)} |")


def views_table(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Test accuracy with M views (vote, mean) of the noise-trained runs; time ratio to M = 1."""
    name = "noise (gauss .1, shift 2)"
    settings = [(1, "vote")] + [(m, how) for m in (5, 10) for how in ("vote", "mean")]
    accuracy: dict[tuple[int, str], list[dict[str, float]]] = {s: [] for s in settings}
    times: dict[tuple[int, str], list[float]] = {s: [] for s in settings}
    for seed in args.seeds:
        folder = out / f"seed{seed}" / name.replace(" ", "_").replace("/", "_")
        run = restore_run(folder, "cpu")
        data = load_data(run.config)
        noise = build_noise(run.config)
        for round_ in range(args.rounds):
            shift = round_ % len(settings)
            for views, how in settings[shift:] + settings[:shift]:
                start = time.perf_counter()
                reports = evaluate(
                    run.model,
                    run.tasks,
                    eval_batches(run.config, data.test),
                    run.device,
                    run.memory_format,
                    Views(noise, views, how, seed),
                )
                times[(views, how)].append(time.perf_counter() - start)
                if round_ == 0:
                    accuracy[(views, how)].append({t: r.accuracy for t, r in reports.items()})
    base = statistics.median(times[(1, "vote")])
    print(f"\n# voting over views: the '{name}' runs, test split, seeds {args.seeds}\n")
    print("| views M | combine | left acc | right acc | eval time / M=1 |")
    print("|---|---|---|---|---|")
    rows = []
    for views, how in settings:
        left = statistics.fmean(a["left"] for a in accuracy[(views, how)])
        right = statistics.fmean(a["right"] for a in accuracy[(views, how)])
        ratio = statistics.median(times[(views, how)]) / base
        label = "— (plain)" if views == 1 else how
        print(f"| {views} | {label} | {left:.4f} | {right:.4f} | {ratio:.2f} |")
        rows.append({"views": views, "combine": how, "left": left, "right": right, "ratio": ratio})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--limit", type=int, default=None, help="samples per split (default all)")
    parser.add_argument("--backbone", default="lenet", choices=["lenet", "cnn", "mlp"])
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--only", nargs="*", default=None, help="techniques (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds of the views")
    parser.add_argument(
        "--out",
        default="runs/techniques",
        help="run folders (kept: a later call reads the finished runs instead of training them)",
    )
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.only = args.only or list(TECHNIQUES)
    if "plain" not in args.only:
        args.only.insert(0, "plain")
    out = Path(args.out)
    results = train_all(args, out)
    print_techniques(args, results)
    summary: dict[str, Any] = {"args": vars(args), "techniques": results}
    if "noise (gauss .1, shift 2)" in args.only:
        summary["views"] = views_table(args, out)
    (out / "techniques.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
