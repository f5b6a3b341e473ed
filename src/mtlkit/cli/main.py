"""``mtlkit`` — train, evaluate and compare multi-task models from YAML configs.

Exit codes: 0 success, 1 a run failed (data unavailable, checkpoint, divergence, a folder that
cannot be written, refusing to overwrite or resume a finished run), 2 bad usage, configuration or
input data (a table or file of the user's that cannot be used as given; also an inconsistent
torchrun launch), 130 / 143 stopped by SIGINT / SIGTERM after a checkpoint.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mtlkit.cli.grid_commands import _affinity, _compare, _pareto
from mtlkit.cli.info_commands import _architectures, _data_fetch, _data_list, _methods
from mtlkit.cli.run_commands import _eval, _export, _predict
from mtlkit.cli.train_commands import _baselines, _train
from mtlkit.cli.transfer_commands import _add_task, _ensemble, _fewshot, _finetune, _groups
from mtlkit.config import ConfigError


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
        "export",
        help="write a finished run's selected weights as safetensors, or its network as one "
        "ONNX graph checked by onnxruntime (+ JSON)",
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument(
        "--format",
        choices=("safetensors", "onnx"),
        default="safetensors",
        help="safetensors (weights only) or onnx (the graph; pip install 'mtlkit[onnx]')",
    )
    export.add_argument(
        "--out",
        type=Path,
        help="the file to write (default: RUN_DIR/model.safetensors or RUN_DIR/model.onnx)",
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


if __name__ == "__main__":
    raise SystemExit(main())
