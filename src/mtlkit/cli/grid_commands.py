"""The commands that train a grid of runs: ``mtlkit compare``, ``mtlkit tune``, ``mtlkit pareto``
and ``mtlkit affinity``, and their ``--methods``, ``--tune``, ``--param`` and sweep options
(``--workers``, ``--storage``, ``--stale-after``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mtlkit.cli.options import Commands, config_command
from mtlkit.config import ConfigError, load_config

if TYPE_CHECKING:
    from mtlkit.workflows.comparison import MethodComparison
    from mtlkit.workflows.sweeps import SweepOptions


def _compare(args: argparse.Namespace) -> int:
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
        sweep=_sweep_options(args),
    )
    _print_comparison(result)
    return 0


def _tune(args: argparse.Namespace) -> int:
    from mtlkit.workflows.tune import tune_methods
    from mtlkit.workflows.tune_space import parse_param

    config = load_config(args.config, args.overrides)
    if not 0.0 < args.confidence < 1.0:
        raise ConfigError(f"--confidence: must be in (0, 1), got {args.confidence}.")
    params = [parse_param(text) for text in args.param]
    result = tune_methods(
        config,
        args.out or Path("runs") / f"{config.name}-tune",
        _methods_option(args.methods),
        params,
        trials=args.trials,
        seeds=args.seeds,
        pruner=args.pruner,
        confidence=args.confidence,
        overwrite=args.overwrite,
        sweep=_sweep_options(args),
    )
    for study in result.studies:
        counts = study.counts
        print(
            f"[tune] {study.subject}: {study.chosen_label} (val {study.val_score:.4f}); trials "
            f"{counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed; "
            f"trial-epochs {counts.trial_epochs}/{study.full_epochs}"
            + (f"; on the boundary: {', '.join(study.boundary)}" if study.boundary else "")
        )
    _print_comparison(result.comparison)
    return 0


def _print_comparison(result: MethodComparison) -> None:
    from mtlkit.evaluation.document import markdown_table

    table = result.table
    print()
    print(markdown_table(table.header, table.rows, table.text_columns))
    for note in result.notes():
        print(f"\n{note}")
    print(f"\nreport: {result.out_dir / 'report.md'}  (runs trained now: {result.trained})")


def _sweep_options(args: argparse.Namespace) -> SweepOptions:
    from mtlkit.workflows.sweeps import SweepOptions

    return SweepOptions(storage=args.storage, workers=args.workers, stale_after=args.stale_after)


def add_sweep_options(command: argparse.ArgumentParser) -> None:
    """``--workers``, ``--storage`` and ``--stale-after`` (:mod:`mtlkit.workflows.sweeps`)."""
    from mtlkit.workflows.sweeps import DEFAULT_STALE_AFTER

    command.add_argument(
        "--workers",
        type=int,
        default=1,
        help="trials run at once on this machine, as processes (default 1); threads per trial: "
        "OMP_NUM_THREADS if set, else the cores divided by the workers",
    )
    command.add_argument(
        "--storage",
        metavar="URL",
        help="an Optuna storage (postgresql://…, mysql://…, grpc://host:port) shared by every "
        "process and machine running this command (default: study.journal in --out)",
    )
    command.add_argument(
        "--stale-after",
        type=float,
        default=DEFAULT_STALE_AFTER,
        metavar="SECONDS",
        help="a running trial without a heartbeat this long is taken over, its run resumed "
        f"from its last checkpoint (default {DEFAULT_STALE_AFTER:g})",
    )


def _pareto(args: argparse.Namespace) -> int:
    from mtlkit.workflows.pareto import pareto_sweep

    reference = None
    if args.reference is not None:
        try:
            reference = [float(value) for value in args.reference.split(",")]
        except ValueError:
            raise ConfigError(
                f"--reference {args.reference!r}: give numbers separated by commas, e.g. 2,2."
            ) from None
    if Path(args.config).is_dir():  # a preference-conditioned run: its front on test rays
        from mtlkit.cli.pareto_set_command import print_set_front

        return print_set_front(args, reference)
    config = load_config(args.config, args.overrides)
    result = pareto_sweep(
        config,
        args.out or Path("runs") / f"{config.name}-pareto",
        points=args.points,
        methods=_methods_option(args.methods),
        reference=reference,
        overwrite=args.overwrite,
        sweep=_sweep_options(args),
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


def add_parsers(commands: Commands) -> None:
    """Add ``compare``, ``pareto`` and ``affinity`` to the ``mtlkit`` command."""
    compare = config_command(
        commands,
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
    add_sweep_options(compare)
    tune = config_command(
        commands,
        "tune",
        "search each method's settings on validation (Optuna: TPE or the grid, with pruning), "
        "then compare the winners over seeds on test (resumable)",
        _tune,
    )
    tune.add_argument(
        "--methods",
        required=True,
        help="comma-separated methods, options after colons: ew,pcgrad,cagrad:c=0.2",
    )
    tune.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=SPACE",
        help="a searched setting: optim.lr=loguniform:1e-3:1e-1, KEY=uniform:A:B, KEY=int:A:B "
        "or KEY=V1,V2,… (every one a list: the full grid); repeatable",
    )
    tune.add_argument(
        "--trials",
        type=int,
        help="complete or pruned trials per method (default: the grid's size when every "
        "--param is a list)",
    )
    tune.add_argument(
        "--pruner",
        choices=("median", "hyperband", "none"),
        default="median",
        help="stop trials clearly behind on an epoch's validation score (default median)",
    )
    tune.add_argument(
        "--seeds", type=int, default=3, help="seeds the winners are retrained at (default 3)"
    )
    tune.add_argument(
        "--confidence", type=float, default=0.95, help="confidence level of the intervals"
    )
    add_sweep_options(tune)
    pareto = config_command(
        commands,
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
    pareto.add_argument(
        "--rays",
        type=int,
        default=25,
        help="given a preference-conditioned run folder instead of a config: its test rays",
    )
    pareto.add_argument(
        "--sweep",
        type=Path,
        metavar="DIR",
        help="with a run folder: a mtlkit pareto sweep folder to draw beside its front",
    )
    add_sweep_options(pareto)
    affinity = config_command(
        commands,
        "affinity",
        "train once and measure which tasks help each other (TAG affinity, gradient cosines) "
        "and suggest a grouping",
        _affinity,
    )
    affinity.add_argument(
        "--every", type=int, default=10, help="measure every N training steps (default 10)"
    )
