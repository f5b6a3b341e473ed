"""One network for the whole front against one network per point: hypervolume at (2, 2) on the
test losses over 25 rays for COSMOS, PHN-LS, PHN-EPO and PaMaL, beside the 11-point λ sweep and
the single-task point, on ParetoMTL's published-size benchmarks; training time relative to the
sweep's.

    python benchmarks/pareto_set.py [--benchmarks multi-mnist,multi-fashion,multi-fashion-mnist]
        [--methods cosmos,phn-ls,phn-epo,pamal,sweep] [--epochs 100] [--seeds 0]
        [--limit N] [--out runs/pareto-set-bench]

Every (benchmark, method, seed) cell writes ``<out>/<benchmark>/<method>-seed<S>/cell.json``
when done; a rerun skips the finished cells, so the script resumes and runs in parts
(``--benchmarks``, ``--methods``, ``--seeds`` pick the part). The table is printed from every
finished cell of ``--out``. The protocol: ``pareto-published`` (120,000/20,000 36×36, 10 % of
training held out for validation, as COSMOS), LeNet, Adam lr 1e-3, batch 256, as the papers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtlkit.config import parse_config
from mtlkit.workflows import train
from mtlkit.workflows.pareto import pareto_sweep
from mtlkit.workflows.pareto_set import pareto_set_front

BENCHMARKS = ("multi-mnist", "multi-fashion", "multi-fashion-mnist")
SET_METHODS = {  # label -> (model.preference, balancer)
    "cosmos": ("cosmos", "ew"),
    "phn-ls": ("phn", "ew"),
    "phn-epo": ("phn", "epo"),
    "pamal": ("pamal", "ew"),
}
METHODS = (*SET_METHODS, "sweep")
PUBLISHED = {  # hypervolume at (2, 2) on test loss; Multi-MNIST / Multi-Fashion / Fashion+MNIST
    "single-task": (2.88, 2.21, 2.78),
    "cosmos": (2.95, 2.31, 2.82),
    "best published": (3.02, 2.33, 2.92),
}


def _config(benchmark: str, method: str, seed: int, args: argparse.Namespace) -> dict:
    config: dict = {
        "name": f"{benchmark}-{method}-seed{seed}",
        "seed": seed,
        "data": {
            "benchmark": benchmark,
            "protocol": "pareto-published",
            "val_fraction": 0.1,
            "limit": args.limit,
        },
        "model": {"backbone": "lenet"},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": args.epochs, "batch_size": 256, "progress": False},
    }
    if method in SET_METHODS:
        family, balancer = SET_METHODS[method]
        config["model"] |= {"preference": family, "preference_options": {"dirichlet": 0.2}}
        config["balancer"] = {"name": balancer}
    return config


def _run_cell(benchmark: str, method: str, seed: int, args: argparse.Namespace) -> dict:
    folder = args.out / benchmark / f"{method}-seed{seed}"
    done = folder / "cell.json"
    if done.is_file():
        return json.loads(done.read_text())
    config = parse_config(_config(benchmark, method, seed, args))
    if method == "sweep":  # resumes its own runs
        result = pareto_sweep(config, folder / "sweep", points=11)
        cell = {
            "hypervolume": result.hypervolume,
            "single_task_hypervolume": result.single_task_hypervolume,
        }
    else:
        run = folder / "run"
        if not (run / "metrics.json").is_file():
            train(config, run, resume=(run / "last.pt").is_file())
        cell = {"hypervolume": pareto_set_front(run, rays=25).hypervolume}
    # training time alone (every run's own wall time, resumed parts included)
    cell["seconds"] = sum(
        json.loads(path.read_text())["seconds"] for path in folder.rglob("metrics.json")
    )
    done.write_text(json.dumps(cell, indent=2))
    print(f"done {benchmark} {method} seed {seed}: {cell}", flush=True)
    return cell


def _table(args: argparse.Namespace) -> None:
    print(
        f"\nhypervolume at (2, 2) on test cross-entropy, 25 rays (sweep: 11 λ points); "
        f"pareto-published (120,000/20,000 36×36, 10 % validation), LeNet, {args.epochs} "
        f"epochs{'' if args.limit is None else f', first {args.limit} samples per split'}; "
        "mean over the finished seeds; time relative to the sweep's (same machine)"
    )
    print("| benchmark | method | seeds | hypervolume | published COSMOS / best | time ÷ sweep |")
    print("|---|---|---|---|---|---|")
    for b, benchmark in enumerate(BENCHMARKS):
        cells = {
            method: [
                json.loads(path.read_text())
                for path in sorted((args.out / benchmark).glob(f"{method}-seed*/cell.json"))
            ]
            for method in METHODS
        }
        sweep_time = (
            sum(c["seconds"] for c in cells["sweep"]) / len(cells["sweep"])
            if cells["sweep"]
            else float("nan")
        )
        published = f"{PUBLISHED['cosmos'][b]} / {PUBLISHED['best published'][b]}"
        for method, found in cells.items():
            if not found:
                continue
            volume = sum(c["hypervolume"] for c in found) / len(found)
            ratio = sum(c["seconds"] for c in found) / len(found) / sweep_time
            print(
                f"| {benchmark} | {method} | {len(found)} | {volume:.4f} | {published} | "
                f"{ratio:.3f} |"
            )
            if method == "sweep":
                single = sum(c["single_task_hypervolume"] for c in found) / len(found)
                print(
                    f"| {benchmark} | single-task point | {len(found)} | {single:.4f} | "
                    f"{PUBLISHED['single-task'][b]} (published) | |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--limit", type=int, default=None, help="samples per split (default all)")
    parser.add_argument("--out", type=Path, default=Path("runs/pareto-set-bench"))
    args = parser.parse_args()
    for benchmark in args.benchmarks.split(","):
        if benchmark not in BENCHMARKS:
            parser.error(f"--benchmarks: {benchmark!r} is not one of {', '.join(BENCHMARKS)}")
        for method in args.methods.split(","):
            if method not in METHODS:
                parser.error(f"--methods: {method!r} is not one of {', '.join(METHODS)}")
            for seed in (int(s) for s in args.seeds.split(",")):
                _run_cell(benchmark, method, seed, args)
    _table(args)


if __name__ == "__main__":
    main()
