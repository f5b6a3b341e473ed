"""One network for the whole front against one network per point: hypervolume at (2, 2) on the
test losses over 25 rays for COSMOS, PHN-LS, PHN-EPO and PaMaL, beside the 11-point λ sweep and
the single-task point, on ParetoMTL's published-size benchmarks; training time relative to the
sweep's.

    python benchmarks/pareto_set.py [--benchmarks multi-mnist,multi-fashion,multi-fashion-mnist]
        [--methods cosmos,phn-ls,phn-epo,pamal,sweep] [--epochs 100] [--seeds 0]
        [--limit N] [--out runs/pareto-set-bench] [--table]

Every (benchmark, method, epochs, limit, seed) cell lives in
``<out>/<benchmark>/<method>-e<epochs>[-limit<N>]-seed<S>/`` and writes ``cell.json`` when done;
a rerun skips the finished cells and continues an unfinished one from its last checkpoint (a
set-learning run mid-epoch, a sweep's run mid-training), so the script resumes and runs in parts
(``--benchmarks``, ``--methods``, ``--seeds`` pick the part; cells are run in the order given).
The epochs and the limit are part of a cell's name: cells of another length never mix.

Every invocation is recorded (``ledger.py``): ``<out>/parts.jsonl`` gets a line with its start
and end (UTC), wall and CPU seconds, machine, load and the cells it finished, and each cell its
``part-<id>.json``; ``cell.json`` carries the cell's training wall time and the machines and load
it was trained under. The table, printed at the end (``--table``: only the table, nothing run),
reads the finished cells of ``--out`` and marks the unfinished ones; a time ratio between cells
trained on different machines, or under a mean load differing by a core or more, is flagged.

The protocol: ``pareto-published`` (120,000/20,000 36×36, 10 % of training held out for
validation, as COSMOS), LeNet, Adam lr 1e-3, batch 256, as the papers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ledger import PartLedger, cell_parts, machine_key, read_parts, running_parts

from mtlkit.atomic import write_text_atomic
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
PAPERS_EPOCHS = 100
SWEEP_RUNS = 13
"""The sweep's trainings: 11 λ points and one single-task run per task."""
CELL = "cell.json"
LOAD_GAP = 1.0
"""Mean loads (1 minute) this far apart mean another core's worth of competing work: the wall
times of two cells are then not comparable on a 2-core machine."""


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


def cell_folder(args: argparse.Namespace, benchmark: str, method: str, seed: int) -> Path:
    """The cell's folder: its benchmark, method, epochs, limit and seed."""
    limit = "" if args.limit is None else f"-limit{args.limit}"
    return args.out / benchmark / f"{method}-e{args.epochs}{limit}-seed{seed}"


def _run_cell(
    benchmark: str, method: str, seed: int, args: argparse.Namespace, ledger: PartLedger
) -> None:
    folder = cell_folder(args, benchmark, method, seed)
    if (folder / CELL).is_file():
        return
    with ledger.cell(folder):
        config = parse_config(_config(benchmark, method, seed, args))
        if method == "sweep":  # resumes its own runs
            result = pareto_sweep(config, folder / "sweep", points=11)
            cell = {
                "hypervolume": result.hypervolume,
                "single_task_hypervolume": result.single_task_hypervolume,
            }
        else:
            run = folder / "run"
            if not (run / "metrics.json").is_file():  # resumed from its last checkpoint
                train(config, run, resume=(run / "config.yaml").is_file())
            cell = {"hypervolume": pareto_set_front(run, rays=25).hypervolume}
    cell |= {
        "benchmark": benchmark,
        "method": method,
        "seed": seed,
        "epochs": args.epochs,
        "limit": args.limit,
        "training_seconds": _training_seconds(folder),
        **_provenance(folder),
    }
    write_text_atomic(folder / CELL, json.dumps(cell, indent=2))
    ledger.finished(f"{benchmark}/{folder.name}")
    print(f"done {benchmark}/{folder.name}: hypervolume {cell['hypervolume']:.4f}", flush=True)


def _training_seconds(folder: Path) -> float:
    """The wall seconds of every training epoch of the cell's runs (validation included), an
    interrupted epoch counted once over its parts (its checkpoint carries its seconds)."""
    return sum(
        record["seconds"]
        for path in folder.rglob("metrics.json")
        for record in json.loads(path.read_text())["history"]
    )


def _provenance(folder: Path) -> dict:
    """The parts that worked on the cell: their machines, CPU seconds, time stopped and mean
    load (weighted by each part's wall time on the cell)."""
    parts = cell_parts(folder)
    wall = sum(p["wall_seconds"] for p in parts)
    loaded = [p for p in parts if p["load_mean"] is not None]
    return {
        "machines": sorted({machine_key(p["machine"]) for p in parts}),
        "cpu_seconds": round(sum(p["cpu_seconds"] for p in parts), 1),
        "paused_seconds": round(sum(p["paused_seconds"] for p in parts), 1),
        "load_mean": (
            round(sum(p["load_mean"] * p["wall_seconds"] for p in loaded) / wall, 2)
            if loaded and wall > 0
            else None
        ),
        "parts": [
            {key: p[key] for key in ("part", "start", "end", "wall_seconds", "load_mean")}
            for p in parts
        ],
    }


def _progress(folder: Path, method: str, args: argparse.Namespace) -> str:
    """How far an unfinished cell got."""
    if not folder.is_dir():
        return "not started"
    if method == "sweep":
        done = len(list((folder / "sweep" / "cells").glob("*/metrics.json")))
        return f"unfinished: {done} of {SWEEP_RUNS} runs trained"
    run = folder / "run"
    if (run / "metrics.json").is_file():
        return "unfinished: trained, front not evaluated"
    log = run / "log.csv"
    epochs = len(log.read_text().splitlines()) - 1 if log.is_file() else 0
    return f"unfinished: {max(epochs, 0)} of {args.epochs} epochs"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _comparability(cells: list[dict], sweep: list[dict]) -> str:
    """Why a time ratio between ``cells`` and the ``sweep``'s cells may mislead, or ''."""
    notes = []
    machines = {m for c in cells + sweep for m in c["machines"]}
    if len(machines) > 1:
        notes.append(f"machines differ ({'; '.join(sorted(machines))})")
    loads = [
        [c["load_mean"] for c in group if c["load_mean"] is not None] for group in (cells, sweep)
    ]
    if all(loads) and abs(_mean(loads[0]) - _mean(loads[1])) >= LOAD_GAP:
        notes.append(f"load differs ({_mean(loads[0]):.1f} vs the sweep's {_mean(loads[1]):.1f})")
    paused = sum(c["paused_seconds"] for c in cells + sweep)
    if paused > 0:
        notes.append(f"{paused:.0f} s stopped (SIGSTOP) inside the wall times")
    return "; ".join(notes)


def _table(
    args: argparse.Namespace, benchmarks: list[str], methods: list[str], seeds: list[int]
) -> None:
    epochs = f"{args.epochs} epochs" + (
        ""
        if args.epochs == PAPERS_EPOCHS
        else f" (the papers train {PAPERS_EPOCHS}: not comparable)"
    )
    limit = "" if args.limit is None else f", first {args.limit} samples per split"
    print(
        f"\nhypervolume at (2, 2) on test cross-entropy, 25 rays (sweep: 11 λ points); "
        f"pareto-published (120,000/20,000 36×36, 10 % validation){limit}, LeNet, {epochs}; "
        f"mean over the finished seeds of {seeds}; training wall time relative to the sweep's; "
        "published: the figure for that method (COSMOS, single-task) or else the best published"
    )
    print("| benchmark | method | seeds | hypervolume | published | gap | time ÷ sweep | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for benchmark in benchmarks:
        b = BENCHMARKS.index(benchmark)
        found: dict[str, list[dict]] = {}
        for method in methods:
            found[method] = []
            for seed in seeds:
                folder = cell_folder(args, benchmark, method, seed)
                if (folder / CELL).is_file():
                    found[method].append(json.loads((folder / CELL).read_text()))
                else:
                    progress = _progress(folder, method, args)
                    print(f"| {benchmark} | {method} | seed {seed} | {progress} | | | | |")
        sweep = found.get("sweep", [])
        for method, cells in found.items():
            if not cells:
                continue
            rows = [(method, "cosmos" if method == "cosmos" else "best published", "hypervolume")]
            if method == "sweep":
                rows.append(("single-task point", "single-task", "single_task_hypervolume"))
            for label, published_key, key in rows:
                ours = _mean([c[key] for c in cells])
                published = PUBLISHED[published_key][b]
                if label == "single-task point":
                    ratio, notes = "(in the sweep's)", ""
                elif sweep:
                    time = _mean([c["training_seconds"] for c in cells])
                    ratio = f"{time / _mean([c['training_seconds'] for c in sweep]):.3f}"
                    notes = _comparability(cells, sweep)
                else:
                    ratio, notes = "sweep unfinished", ""
                print(
                    f"| {benchmark} | {label} | {len(cells)} | {ours:.4f} | {published} "
                    f"({published_key}) | {ours - published:+.4f} | {ratio} | {notes} |"
                )


def _parts(out: Path) -> None:
    """The recorded parts: when, where, how long, what they finished."""
    print(f"\nparts of {out} (parts.jsonl; running: the last heartbeat in parts/):")
    print(
        "| part | start – end (UTC) | wall s | CPU s | stopped s | machine | mean load | "
        "finished | status |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for p in read_parts(out) + running_parts(out):
        print(
            f"| {p['part']} | {p['start']} – {p['end']} | {p['wall_seconds']:.0f} | "
            f"{p['cpu_seconds']:.0f} | {p['paused_seconds']:.0f} | {machine_key(p['machine'])} | "
            f"{p['load_mean']} | {', '.join(p['cells_finished']) or '—'} | {p['status']} |"
        )


def _names(
    parser: argparse.ArgumentParser, flag: str, given: str, known: tuple[str, ...]
) -> list[str]:
    names = given.split(",")
    for name in names:
        if name not in known:
            parser.error(f"{flag}: {name!r} is not one of {', '.join(known)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=PAPERS_EPOCHS)
    parser.add_argument("--limit", type=int, default=None, help="samples per split (default all)")
    parser.add_argument("--out", type=Path, default=Path("runs/pareto-set-bench"))
    parser.add_argument("--table", action="store_true", help="print the table only; run nothing")
    args = parser.parse_args()
    benchmarks = _names(parser, "--benchmarks", args.benchmarks, BENCHMARKS)
    methods = _names(parser, "--methods", args.methods, METHODS)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: give comma-separated integers, got {args.seeds!r}")
    if args.epochs < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--epochs and --limit: give 1 or more")
    if not args.table:
        args.out.mkdir(parents=True, exist_ok=True)
        with PartLedger(args.out) as ledger:
            for benchmark in benchmarks:
                for method in methods:
                    for seed in seeds:
                        _run_cell(benchmark, method, seed, args, ledger)
    _table(args, benchmarks, methods, seeds)
    _parts(args.out)


if __name__ == "__main__":
    main()
