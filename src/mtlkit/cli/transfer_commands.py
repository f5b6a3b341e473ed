"""The commands that start from a trained run: ``mtlkit groups``, ``finetune``, ``add-task``,
``fewshot`` and ``ensemble``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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
