"""What mtlkit offers: ``mtlkit methods``, ``mtlkit architectures`` and ``mtlkit data`` (fetch or
list the datasets)."""

from __future__ import annotations

import argparse


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
