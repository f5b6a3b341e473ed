"""The commands on a finished run: ``mtlkit eval``, ``mtlkit predict`` and ``mtlkit export``."""

from __future__ import annotations

import argparse
import json


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
