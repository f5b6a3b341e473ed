"""The commands that start from a trained run: ``mtlkit groups``, ``finetune``, ``add-task``,
``fewshot`` and ``ensemble``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mtlkit.cli.options import Commands, run_options
from mtlkit.cli.train_commands import _summary
from mtlkit.config import ConfigError


def _groups(args: argparse.Namespace) -> int:
    from mtlkit.workflows.finetune import group_sizes

    for name, size in group_sizes(args.run_dir).items():
        print(f"{name:<10} {size:>10,} parameters")
    return 0


def _derived_out(args: argparse.Namespace, workflow: str) -> Path:
    from mtlkit.workflows import prepare_run_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"{args.run_dir.name}-{workflow}-{stamp}"
    return prepare_run_dir(out, overwrite=args.overwrite)


def _finetune(args: argparse.Namespace) -> int:
    from mtlkit.workflows.finetune import finetune

    result = finetune(args.run_dir, args.config, _derived_out(args, "finetune"), args.overrides)
    for name, report in result.test.items():
        print(f"test {name}: {_summary(report)}")
    print(f"run folder: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    return 0


def _add_task(args: argparse.Namespace) -> int:
    from mtlkit.workflows.add_task import add_task

    added = add_task(args.run_dir, args.config, _derived_out(args, "add-task"), args.overrides)
    for name, report in added.run.test.items():
        print(f"test {name}: {_summary(report)}")
    print("old tasks (test, before -> after):")
    for name, before in added.before.items():
        print(f"  {name}: {before:.4f} -> {added.after[name]:.4f}")
    print(f"backward transfer (BWT): {added.bwt:+.4f}")
    print(f"run folder: {added.run.run_dir}  (report: {added.run.run_dir / 'report.md'})")
    return 0


def _fewshot(args: argparse.Namespace) -> int:
    from mtlkit.atomic import write_text_atomic
    from mtlkit.workflows.fewshot import fewshot

    try:
        shots = [int(n) for n in args.shots.split(",")]
    except ValueError:
        raise ConfigError(f"--shots {args.shots}: write whole numbers, e.g. 1,5,10,50.") from None
    result = fewshot(
        args.run_dir,
        args.task,
        shots,
        args.draws,
        others=args.others,
        overrides=args.overrides,
        tune=args.tune,
        steps=args.steps,
        lr=args.lr,
        random_trunk=not args.no_random,
        device=args.device,
    )
    print(result.table())
    out = args.out or args.run_dir / f"fewshot-{args.task}.json"
    write_text_atomic(out, json.dumps(result.to_dict(), indent=2))
    print(f"\n{args.draws} draws per cell, mean ± 95% CI; every draw: {out}")
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from mtlkit.atomic import write_text_atomic
    from mtlkit.workflows.ensemble import ensemble_heads, ensemble_record

    tasks = args.tasks.split(",")
    result = ensemble_heads(args.run_dir, tasks, args.target, args.device)
    print(f"test, against the labels of {result.target}:")
    print(result.table())
    record = ensemble_record({"ensemble": result})["ensemble"]
    out = args.run_dir / f"ensemble-{'-'.join(tasks)}.json"
    write_text_atomic(out, json.dumps(record, indent=2))
    print(f"weights and scores: {out}")
    return 0


def add_parsers(commands: Commands) -> None:
    """Add ``groups``, ``finetune``, ``add-task``, ``fewshot`` and ``ensemble`` to the
    ``mtlkit`` command."""
    groups = commands.add_parser(
        "groups", help="list a trained run's layer groups (stage1, ..., heads) and their sizes"
    )
    groups.add_argument("run_dir", type=Path)
    groups.set_defaults(handler=_groups)

    finetune = commands.add_parser(
        "finetune",
        help="continue a trained run with layer groups frozen, unfrozen on a schedule, or "
        "with their own learning rates",
    )
    _from_run(finetune, "epochs, learning rates, data of the run's tasks")
    finetune.set_defaults(handler=_finetune)

    add_task = commands.add_parser(
        "add-task",
        help="add a task (a new head) to a trained run; report the old tasks' backward transfer",
    )
    _from_run(add_task, "data holding the new task")
    add_task.set_defaults(handler=_add_task)

    _add_fewshot(commands)

    ensemble = commands.add_parser(
        "ensemble",
        help="combine the heads of tasks with the same classes (weights fitted on validation); "
        "score each head and the ensemble on the test split",
    )
    ensemble.add_argument("run_dir", type=Path)
    ensemble.add_argument("--tasks", required=True, help="two or more tasks, comma-separated")
    ensemble.add_argument("--target", help="the task whose labels to score (default: the first)")
    ensemble.add_argument("--device", default="cpu")
    ensemble.set_defaults(handler=_ensemble)


def _from_run(command: argparse.ArgumentParser, what: str) -> None:
    """The arguments of a command that starts from a trained run and a config of changes."""
    command.add_argument("run_dir", type=Path, help="the trained run to start from")
    command.add_argument(
        "config",
        nargs="?",
        help=f"a YAML file of what differs from the run's config ({what}), and a "
        "finetune: section (freeze, unfreeze)",
    )
    run_options(command, "finetune.freeze=[stage1]", "the new run folder (default: runs/...)")


def _add_fewshot(commands: Commands) -> None:
    fewshot = commands.add_parser(
        "fewshot",
        help="train a new head on N examples per class of a task, on a run's trunk, other "
        "runs' trunks and a random one; print mean ± 95%% CI over draws",
    )
    fewshot.add_argument("run_dir", type=Path, help="a trained run or an mtlkit baselines folder")
    fewshot.add_argument("--task", required=True, help="a classification task of the data")
    fewshot.add_argument(
        "--shots", default="1,5,10,50", help="examples per class, comma-separated (1,5,10,50)"
    )
    fewshot.add_argument("--draws", type=int, default=10, help="random draws per count (10)")
    fewshot.add_argument(
        "--with",
        dest="others",
        action="append",
        default=[],
        type=Path,
        metavar="RUN_DIR",
        help="another trained run whose trunk to compare (repeatable)",
    )
    fewshot.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the run's config to select the data, e.g. --set data.benchmark=mnist+fashion",
    )
    fewshot.add_argument(
        "--tune", choices=("head", "last"), default="head", help="train the head (and last stage)"
    )
    fewshot.add_argument("--steps", type=int, default=100, help="full-batch Adam steps (100)")
    fewshot.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate (0.01)")
    fewshot.add_argument(
        "--no-random", action="store_true", help="leave out the randomly initialised trunk"
    )
    fewshot.add_argument("--device", default="cpu")
    fewshot.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="JSON of every draw (default: RUN_DIR/fewshot-TASK.json)",
    )
    fewshot.set_defaults(handler=_fewshot)
