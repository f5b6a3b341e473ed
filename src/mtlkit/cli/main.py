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

from mtlkit.cli import (
    grid_commands,
    info_commands,
    run_commands,
    train_commands,
    transfer_commands,
)
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
    """The command's parser (built once: argparse's construction is most of a refusal's cost);
    each command family adds its own commands, in the order ``mtlkit --help`` lists them."""
    parser = argparse.ArgumentParser(prog="mtlkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for family in (train_commands, grid_commands, run_commands, transfer_commands, info_commands):
        family.add_parsers(commands)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
