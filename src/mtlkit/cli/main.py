"""``mtlkit`` — train, evaluate and compare multi-task models from YAML configs.

Exit codes: 0 success, 1 a run failed (data, checkpoint, divergence, a folder that cannot be
written, refusing to overwrite or resume a finished run), 2 bad usage or config (also an
inconsistent torchrun launch), 130 / 143 stopped by SIGINT / SIGTERM after a checkpoint.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mtlkit.config import ConfigError, ExperimentConfig, config_difference, load_config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mtlkit`` command; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from mtlkit.data import DataError
    from mtlkit.training import CheckpointError, DivergedError, LaunchError, TrainingInterrupted

    try:
        return args.handler(args)
    except ConfigError as error:
        _say(f"config error: {error}")
        return 2
    except LaunchError as error:
        _say(f"launch error: {error}")
        return 2
    except TrainingInterrupted as stopped:
        _say(f"{stopped}. Resume with: {_resume_command(args)}")
        return stopped.exit_code
    except (DataError, CheckpointError, DivergedError, OSError) as error:
        _say(f"error: {error}")
        return 1


def _say(message: str) -> None:
    """One line on stderr, whatever the message holds (naming the rank but for rank 0)."""
    from mtlkit.training.distributed import rank as process_rank

    rank = process_rank()
    prefix = "mtlkit: " if rank == 0 else f"mtlkit (rank {rank}): "
    print(prefix + " ".join(str(message).split()), file=sys.stderr)


def _resume_command(args: argparse.Namespace) -> str:
    """The command that resumes the stopped run or comparison in ``args.folder``."""
    command = f"-m mtlkit {args.command} --resume {args.folder}"
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes == 1:
        return f"mtlkit {args.command} --resume {args.folder}"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(processes)))
    if per_node == processes:
        return f"torchrun --nproc-per-node {processes} {command}"
    nodes = processes // per_node
    return f"torchrun --nnodes {nodes} --nproc-per-node {per_node} <rendezvous flags> {command}"


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The command's parser (built once: argparse's construction is most of a refusal's cost)."""
    parser = argparse.ArgumentParser(prog="mtlkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def with_config(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "config",
            nargs="?",
            help="a YAML experiment config, e.g. configs/multi-mnist.yaml (optional with --resume)",
        )
        command.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one setting, e.g. --set train.epochs=3 (repeatable)",
        )
        command.add_argument("--out", type=Path, help="the run folder (default: runs/NAME-TIME)")
        command.add_argument(
            "--overwrite", action="store_true", help="replace a finished run already in --out"
        )
        command.add_argument(
            "--resume",
            type=Path,
            metavar="DIR",
            help="continue the stopped run (or comparison) in DIR from its latest checkpoint",
        )

    train = commands.add_parser("train", help="train one configuration and write its run folder")
    with_config(train)
    train.set_defaults(handler=_train, command="train")

    baselines = commands.add_parser(
        "baselines",
        help="train the multi-task model and one single-task model per task, and compare them",
    )
    with_config(baselines)
    baselines.set_defaults(handler=_baselines, command="baselines")

    evaluate = commands.add_parser("eval", help="re-evaluate a finished run on its test split")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(handler=_eval)

    export = commands.add_parser(
        "export", help="write a finished run's selected weights as safetensors (+ JSON)"
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument(
        "--out", type=Path, help="the weights file (default: RUN_DIR/model.safetensors)"
    )
    export.set_defaults(handler=_export)

    methods = commands.add_parser("methods", help="list the balancing methods and their options")
    methods.set_defaults(handler=_methods)

    data = commands.add_parser("data", help="fetch or list datasets")
    data_commands = data.add_subparsers(title="data commands", metavar="ACTION")
    fetch = data_commands.add_parser("fetch", help="download and verify a base dataset")
    fetch.add_argument("name", help="mnist or fashion-mnist")
    fetch.add_argument("--data-dir", help="where datasets live (default: $MTLKIT_DATA or a cache)")
    fetch.set_defaults(handler=_data_fetch)
    listing = data_commands.add_parser("list", help="list datasets and benchmarks")
    listing.add_argument("--data-dir")
    listing.set_defaults(handler=_data_list)
    return parser


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
    config = load_config(args.folder / "config.yaml")
    if args.config is not None or args.overrides:
        given = load_config(args.config or args.folder / "config.yaml", args.overrides)
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
        print(f"test {name}: accuracy {report.accuracy:.4f}  macro-F1 {report.macro_f1:.4f}")
    print(f"run folder: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    return 0


def _baselines(args: argparse.Namespace) -> int:
    from mtlkit.training.distributed import is_main_process
    from mtlkit.workflows import train_with_baselines

    config, folder = _config_and_folder(args)
    comparison = train_with_baselines(config, folder, resume=args.resume is not None)
    if not is_main_process():
        return 0
    print()
    print(comparison.table)
    for label, attribute in (("single-task", "single_task"), ("multi-task", "multi_task")):
        values = [getattr(row, attribute) for row in comparison.rows]
        print(f"mean {label} accuracy: {sum(values) / len(values):.4f}")
    print(f"\nreport: {comparison.report_path}   wall time: {comparison.seconds:.0f}s")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mtlkit.workflows import evaluate_run

    reports = evaluate_run(args.run_dir, args.device)
    print(json.dumps({name: report.summary() for name, report in reports.items()}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from mtlkit.workflows import export_run

    weights, description = export_run(args.run_dir, args.out)
    print(f"weights: {weights}\ndescription: {description}")
    return 0


def _methods(args: argparse.Namespace) -> int:
    from mtlkit.balancing import available

    for info in available():
        options = ", ".join(f"{k}={v!r}" for k, v in info.options.items()) or "no options"
        print(f"{info.name:<12} {info.family:<21} needs {info.needs:<9} {info.summary}")
        print(f"{'':<12} options: {options}")
    return 0


def _data_fetch(args: argparse.Namespace) -> int:
    from mtlkit.data import fetch

    folder = fetch(args.name, args.data_dir)
    print(f"{args.name}: ready in {folder}")
    return 0


def _data_list(args: argparse.Namespace) -> int:
    from mtlkit.data import list_benchmarks, list_datasets

    print("base datasets:")
    for status in list_datasets(args.data_dir):
        print(f"  {status}")
    print("benchmarks:")
    for name, description in list_benchmarks().items():
        print(f"  {name}: {description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
