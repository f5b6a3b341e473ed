"""``mtlkit`` — train, evaluate and compare multi-task models from YAML configs.

Exit codes: 0 success, 1 a run failed (data unavailable, checkpoint, divergence, a folder that
cannot be written, refusing to overwrite or resume a finished run), 2 bad usage, configuration or
input data (a table or file of the user's that cannot be used as given; also an inconsistent
torchrun launch), 130 / 143 stopped by SIGINT / SIGTERM after a checkpoint.
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
from typing import Any

from mtlkit.config import ConfigError, ExperimentConfig, config_difference, load_config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mtlkit`` command; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    from mtlkit.data import DataError, InputError
    from mtlkit.training import CheckpointError, DivergedError, LaunchError, TrainingInterrupted

    try:
        return args.handler(args)
    except ConfigError as error:
        _say(f"config error: {error}")
        return 2
    except InputError as error:
        _say(f"input error: {error}")
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

    def run_options(command: argparse.ArgumentParser, example: str, out: str) -> None:
        """``--set`` (``example``: an assignment for its help), ``--out`` and ``--overwrite``."""
        command.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"override one setting, e.g. --set {example} (repeatable)",
        )
        command.add_argument("--out", type=Path, help=out)
        command.add_argument(
            "--overwrite", action="store_true", help="replace a finished run already in --out"
        )

    def with_config(command: argparse.ArgumentParser, resumable: bool) -> None:
        command.add_argument(
            "config",
            nargs="?" if resumable else None,
            help="a YAML experiment config, e.g. configs/multi-mnist.yaml"
            + (" (optional with --resume)" if resumable else ""),
        )
        run_options(command, "train.epochs=3", "the run folder (default: runs/NAME-TIME)")
        if resumable:
            command.add_argument(
                "--resume",
                type=Path,
                metavar="DIR",
                help="continue the stopped run (or comparison) in DIR from its latest checkpoint",
            )

    def config_command(
        name: str, summary: str, handler, *, resumable: bool = False
    ) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=summary)
        with_config(command, resumable)
        command.set_defaults(handler=handler, command=name)
        return command

    config_command(
        "train", "train one configuration and write its run folder", _train, resumable=True
    )
    config_command(
        "baselines",
        "train the multi-task model and one single-task model per task, and compare them",
        _baselines,
        resumable=True,
    )
    compare = config_command(
        "compare",
        "compare balancing methods over seeds, each with its tuned value, against single-task "
        "baselines (resumable)",
        _compare,
    )
    compare.add_argument(
        "--methods",
        required=True,
        help="comma-separated methods, options after colons: ew,pcgrad,cagrad:c=0.2",
    )
    compare.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    compare.add_argument(
        "--tune",
        action="append",
        default=[],
        metavar="KEY=V1,V2,…",
        help="a setting tuned per method on validation, e.g. optim.lr=0.1,0.03,0.01 (repeatable)",
    )
    compare.add_argument(
        "--confidence", type=float, default=0.95, help="confidence level of the intervals"
    )
    pareto = config_command(
        "pareto",
        "sweep the trade-off between the tasks: preference vectors, the non-dominated front, its "
        "hypervolume and plot (resumable)",
        _pareto,
    )
    pareto.add_argument(
        "--points",
        type=int,
        default=11,
        help="most preference vectors per method (11 for two tasks: λ = 0, 0.1, …, 1)",
    )
    pareto.add_argument(
        "--methods",
        default="fixed",
        help="preference-aware methods: fixed, stch, upgrad, dualproj (default: fixed)",
    )
    pareto.add_argument(
        "--reference",
        help="hypervolume reference point on the test losses, one value per task (default 2,2)",
    )
    affinity = config_command(
        "affinity",
        "train once and measure which tasks help each other (TAG affinity, gradient cosines) "
        "and suggest a grouping",
        _affinity,
    )
    affinity.add_argument(
        "--every", type=int, default=10, help="measure every N training steps (default 10)"
    )

    evaluate = commands.add_parser(
        "eval", help="re-evaluate a finished run on its test split, or on a labelled table"
    )
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="a labelled table (.csv, .parquet, .npz) not used in training, instead of the test "
        "split",
    )
    _add_view_options(evaluate)
    evaluate.set_defaults(handler=_eval)

    predict = commands.add_parser(
        "predict", help="apply a finished run to new rows (or images); write every prediction"
    )
    predict.add_argument("run_dir", type=Path)
    predict.add_argument(
        "input", type=Path, help="a table (.csv, .parquet, .npz), or images (.npy, .npz, IDX)"
    )
    predict.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="a .csv or .parquet file (default: RUN_DIR/predictions-INPUT.csv)",
    )
    predict.add_argument("--device", default="auto")
    _add_view_options(predict)
    predict.set_defaults(handler=_predict)
    export = commands.add_parser(
        "export", help="write a finished run's selected weights as safetensors (+ JSON)"
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument(
        "--out", type=Path, help="the weights file (default: RUN_DIR/model.safetensors)"
    )
    export.set_defaults(handler=_export)

    groups = commands.add_parser(
        "groups", help="list a trained run's layer groups (stage1, ..., heads) and their sizes"
    )
    groups.add_argument("run_dir", type=Path)
    groups.set_defaults(handler=_groups)

    def from_run(command: argparse.ArgumentParser, what: str) -> None:
        command.add_argument("run_dir", type=Path, help="the trained run to start from")
        command.add_argument(
            "config",
            nargs="?",
            help=f"a YAML file of what differs from the run's config ({what}), and a "
            "finetune: section (freeze, unfreeze)",
        )
        run_options(command, "finetune.freeze=[stage1]", "the new run folder (default: runs/...)")

    finetune = commands.add_parser(
        "finetune",
        help="continue a trained run with layer groups frozen, unfrozen on a schedule, or "
        "with their own learning rates",
    )
    from_run(finetune, "epochs, learning rates, data of the run's tasks")
    finetune.set_defaults(handler=_finetune)

    add_task = commands.add_parser(
        "add-task",
        help="add a task (a new head) to a trained run; report the old tasks' backward transfer",
    )
    from_run(add_task, "data holding the new task")
    add_task.set_defaults(handler=_add_task)

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

    methods = commands.add_parser("methods", help="list the balancing methods and their options")
    methods.set_defaults(handler=_methods)

    architectures = commands.add_parser(
        "architectures", help="list the sharing architectures (model.sharing) and their options"
    )
    architectures.set_defaults(handler=_architectures)

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
    comparison = train_with_baselines(config, folder, resume=args.resume is not None)
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


def _add_view_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--views",
        type=int,
        default=None,
        help="M noisy views of each input, drawn from the run's noise (default: its eval.views)",
    )
    command.add_argument(
        "--combine",
        choices=("vote", "mean"),
        default=None,
        help="combine the views by majority vote or mean probability (default: eval.combine)",
    )


def _compare(args: argparse.Namespace) -> int:
    from mtlkit.evaluation.document import markdown_table
    from mtlkit.workflows.compare import compare_methods

    config = load_config(args.config, args.overrides)
    if not 0.0 < args.confidence < 1.0:
        raise ConfigError(f"--confidence: must be in (0, 1), got {args.confidence}.")
    result = compare_methods(
        config,
        args.out or Path("runs") / f"{config.name}-compare",
        _methods_option(args.methods),
        seeds=args.seeds,
        tune=dict(_tune_option(text) for text in args.tune),
        confidence=args.confidence,
        overwrite=args.overwrite,
    )
    table = result.table
    print()
    print(markdown_table(table.header, table.rows, table.text_columns))
    for note in result.notes():
        print(f"\n{note}")
    print(f"\nreport: {result.out_dir / 'report.md'}  (runs trained now: {result.trained})")
    return 0


def _pareto(args: argparse.Namespace) -> int:
    from mtlkit.workflows.pareto import pareto_sweep

    config = load_config(args.config, args.overrides)
    reference = None
    if args.reference is not None:
        try:
            reference = [float(value) for value in args.reference.split(",")]
        except ValueError:
            raise ConfigError(
                f"--reference {args.reference!r}: give numbers separated by commas, e.g. 2,2."
            ) from None
    result = pareto_sweep(
        config,
        args.out or Path("runs") / f"{config.name}-pareto",
        points=args.points,
        methods=_methods_option(args.methods),
        reference=reference,
        overwrite=args.overwrite,
    )
    reference_text = ", ".join(f"{value:g}" for value in result.reference)
    print(f"\nhypervolume (test losses, reference {reference_text}): {result.hypervolume:.4f}")
    for method, volume in result.method_hypervolumes.items():
        print(f"  {method}: {volume:.4f}")
    print(f"  single-task point: {result.single_task_hypervolume:.4f}")
    front = [point.label for point in result.points if point.on_loss_front]
    print(f"non-dominated on test losses: {', '.join(front)}")
    print(f"report: {result.out_dir / 'report.md'}  (runs trained now: {result.trained})")
    return 0


def _affinity(args: argparse.Namespace) -> int:
    from mtlkit.workflows.affinity import measure_affinity

    config = load_config(args.config, args.overrides)
    result = measure_affinity(
        config,
        args.out or Path("runs") / f"{config.name}-affinity",
        every=args.every,
        overwrite=args.overwrite,
    )
    width = max(len(task) for task in result.tasks)
    print("\ninter-task affinity (row: step on task i; column: loss of task j; + = helps):")
    print(" " * width + "  " + "  ".join(f"{task:>{max(8, len(task))}}" for task in result.tasks))
    for task, row in zip(result.tasks, result.affinity):
        cells = "  ".join(f"{v:>+{max(8, len(t))}.4f}" for v, t in zip(row, result.tasks))
        print(f"{task:<{width}}  {cells}")
    groups = " | ".join("{" + ", ".join(group) + "}" for group in result.suggested.groups)
    print(f"suggested grouping: {groups} (score {result.suggested.score:+.4f})")
    print(f"report: {result.out_dir / 'report.md'}")
    return 0


def _split_top_level(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside brackets: ``"a,[1,2],b"`` → a, [1,2], b."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char in "[{(") - (char in "]})")
        if char == separator and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def _methods_option(text: str) -> list[str | dict[str, object]]:
    """``ew,cagrad:c=0.2:rescale=0`` → ``["ew", {"name": "cagrad", "c": 0.2, "rescale": 0}]``."""
    import yaml

    methods: list[str | dict[str, object]] = []
    for item in _split_top_level(text, ","):
        name, *options = _split_top_level(item.strip(), ":")
        if not name or any("=" not in option for option in options):
            raise ConfigError(
                f"--methods {text!r}: write methods as name or name:option=value, e.g. "
                "ew,pcgrad,cagrad:c=0.2."
            )
        if not options:
            methods.append(name)
            continue
        section: dict[str, object] = {"name": name}
        for option in options:
            key, value = option.split("=", 1)
            section[key] = yaml.safe_load(value)
        methods.append(section)
    return methods


def _tune_option(text: str) -> tuple[str, list[object]]:
    """``optim.lr=0.1,0.03`` → ``("optim.lr", [0.1, 0.03])``."""
    import yaml

    key, _, values = text.partition("=")
    if not key.strip() or not values.strip():
        raise ConfigError(
            f"--tune {text!r}: write it as key=value1,value2, e.g. optim.lr=0.1,0.01."
        )
    return key.strip(), [yaml.safe_load(value) for value in _split_top_level(values, ",")]


def _eval(args: argparse.Namespace) -> int:
    from mtlkit.workflows import evaluate_run

    reports = evaluate_run(
        args.run_dir, args.device, args.data, views=args.views, combine=args.combine
    )
    print(json.dumps({name: report.summary() for name, report in reports.items()}, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mtlkit.workflows import predict

    result = predict(
        args.run_dir,
        args.input,
        args.out,
        device=args.device,
        views=args.views,
        combine=args.combine,
    )
    print(f"{len(result.table)} rows predicted: {result.path}")
    return 0


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


def _architectures(args: argparse.Namespace) -> int:
    from mtlkit.models import ARCHITECTURES

    for name in ARCHITECTURES:
        entry = ARCHITECTURES.get(name)
        options = ", ".join(f"{k}={v!r}" for k, v in entry.options.items()) or "no options"
        representation = "one" if entry.shared_representation else "per task"
        print(f"{name:<13} representation: {representation:<9} {entry.summary}")
        print(f"{'':<13} options: {options}")
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
