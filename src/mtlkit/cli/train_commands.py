"""``mtlkit train`` and ``mtlkit baselines``: a config trained fresh, or a stopped run resumed."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mtlkit.cli.options import Commands, config_command
from mtlkit.config import ConfigError, ExperimentConfig, config_difference, load_config


def _config_and_folder(args: argparse.Namespace) -> tuple[ExperimentConfig, Path]:
    """The config and the folder of a train or baselines command, fresh or resumed; the folder
    is also kept in ``args.folder`` (for the resume hint)."""
    from mtlkit.workflows import prepare_resume, prepare_run_dir

    if args.resume is None:
        if args.config is None:
            raise ConfigError("give a CONFIG file, or --resume DIR to continue a stopped run.")
        config = load_config(args.config, args.overrides)
        out = args.out or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        args.folder = prepare_run_dir(out, overwrite=args.overwrite)
        return config, args.folder
    if args.out is not None or args.overwrite:
        raise ConfigError("--resume DIR continues the run in DIR: drop --out and --overwrite.")
    args.folder = prepare_resume(args.resume)
    config = load_config(args.folder / "config.yaml", saved=True)
    if args.config is not None or args.overrides:
        given = load_config(
            args.config or args.folder / "config.yaml", args.overrides, saved=args.config is None
        )
        difference = config_difference(config.to_dict(), given.to_dict())
        if difference is not None:
            raise ConfigError(
                f"--resume {args.folder}: the given config differs from the run's ({difference}"
                "); drop CONFIG and --set to resume the run as it was."
            )
    return config, args.folder


def _train(args: argparse.Namespace) -> int:
    from mtlkit.training.distributed import is_main_process
    from mtlkit.workflows import train

    config, folder = _config_and_folder(args)
    result = train(config, folder, resume=args.resume is not None)
    if not is_main_process():
        return 0
    for name, report in result.test.items():
        print(f"test {name}: {_summary(report)}")
    print(f"run folder: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    return 0


def _summary(report: Any) -> str:
    """``accuracy 0.9531  macro_f1 0.9528`` from a report's summary."""
    return "  ".join(f"{name} {value:.4f}" for name, value in report.summary().items())


def _baselines(args: argparse.Namespace) -> int:
    from mtlkit.training.distributed import is_main_process
    from mtlkit.workflows import train_with_baselines

    config, folder = _config_and_folder(args)
    comparison = train_with_baselines(
        config, folder, resume=args.resume is not None, workers=args.workers
    )
    if not is_main_process():
        return 0
    print()
    print(comparison.table)
    metrics = {row.metric for row in comparison.rows}
    if len(metrics) == 1:  # a mean over tasks means something on one metric only
        (metric,) = metrics
        for label, attribute in (("single-task", "single_task"), ("multi-task", "multi_task")):
            values = [getattr(row, attribute) for row in comparison.rows]
            print(f"mean {label} {metric}: {sum(values) / len(values):.4f}")
    print(f"\nreport: {comparison.report_path}   wall time: {comparison.seconds:.0f}s")
    return 0


def add_parsers(commands: Commands) -> None:
    """Add ``train`` and ``baselines`` to the ``mtlkit`` command."""
    config_command(
        commands,
        "train",
        "train one configuration and write its run folder",
        _train,
        resumable=True,
    )
    baselines = config_command(
        commands,
        "baselines",
        "train the multi-task model and one single-task model per task, and compare them",
        _baselines,
        resumable=True,
    )
    baselines.add_argument(
        "--workers",
        type=int,
        help="trainings run at once, as processes (default: all of them, up to 1.5 per core, "
        "on a CPU; 1 on a GPU or under torchrun); threads per training: OMP_NUM_THREADS if "
        "set, else the cores divided by the workers",
    )
