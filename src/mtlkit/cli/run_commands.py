"""The commands on a finished run: ``mtlkit eval``, ``mtlkit predict`` and ``mtlkit export``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtlkit.cli.options import Commands


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


def _export(args: argparse.Namespace) -> int:
    if args.format == "onnx":
        from mtlkit.workflows import export_onnx

        graph, description, check = export_onnx(args.run_dir, args.out)
        sizes = " and ".join(map(str, check.batches))
        print(
            f"graph: {graph} ({graph.stat().st_size / 1024:.1f} KiB)\ndescription: {description}"
            f"\nonnxruntime at batch sizes {sizes}: largest difference from PyTorch "
            f"{check.largest_difference:.2g} (float32 rounding allows {check.tolerance:.2g})"
        )
        return 0
    from mtlkit.workflows import export_run

    weights, description = export_run(args.run_dir, args.out)
    print(f"weights: {weights}\ndescription: {description}")
    return 0


def add_parsers(commands: Commands) -> None:
    """Add ``eval``, ``predict`` and ``export`` to the ``mtlkit`` command."""
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
