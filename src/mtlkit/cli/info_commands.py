"""What mtlkit offers: ``mtlkit methods``, ``mtlkit architectures`` and ``mtlkit data`` (fetch or
list the datasets)."""

from __future__ import annotations

import argparse

from mtlkit.cli.options import Commands


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


def add_parsers(commands: Commands) -> None:
    """Add ``methods``, ``architectures`` and ``data`` (``fetch``, ``list``) to the ``mtlkit``
    command."""
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
