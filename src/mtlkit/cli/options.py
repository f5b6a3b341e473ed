"""The parser pieces several command families share: a config argument with ``--set``,
``--out`` and ``--overwrite`` (and ``--resume`` for the resumable commands)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

Commands = argparse._SubParsersAction
"""The ``mtlkit`` command's sub-parsers, to which each command family adds its own."""
Handler = Callable[[argparse.Namespace], int]
"""What runs a command: its parsed arguments in, the exit code out."""


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


def config_command(
    commands: Commands, name: str, summary: str, handler: Handler, *, resumable: bool = False
) -> argparse.ArgumentParser:
    """A command that reads a YAML config: ``CONFIG`` (optional with ``--resume`` when
    ``resumable``), :func:`run_options`, and ``--resume DIR`` when ``resumable``."""
    command = commands.add_parser(name, help=summary)
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
    command.set_defaults(handler=handler, command=name)
    return command
