"""ONNX export: which architecture × trunk exports (and why not), the graph's size against the
safetensors weights, and onnxruntime's inference time against PyTorch's (a ratio, one run).

    OMP_NUM_THREADS=1 python benchmarks/onnx_inference.py [--trunks mlp cnn] [--batches 1 256]

Every sharing architecture on every trunk asked for (``mlp`` on rows of 32 features, ``cnn``,
``lenet``, ``resnet`` on 1×28×28 images), with a classification head (10 classes) and a
regression head, is exported by :func:`mtlkit.workflows.onnx_export.onnx_graph` (PyTorch's
exporter) and checked by onnxruntime within float32 rounding (:func:`check_graph`). A network
that does not export is listed with the exporter's reason. For those that do: the ``.onnx`` file
against the same weights as safetensors (what ``mtlkit export`` writes), and at each batch size
onnxruntime's median time over ``--rounds`` rounds of ``--samples`` rows divided by PyTorch's
(``torch.inference_mode``), both on one intra-op thread, measured round-robin in the same run
(:mod:`timing`). Needs the ``onnx`` extra (about 4 minutes on 2 shared cores).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnxruntime
import safetensors.torch
import torch
from timing import add_timing_arguments, interleaved_medians, machine, timing_setup

from mtlkit.models import ARCHITECTURES, classification_head, create_backbone, create_model
from mtlkit.workflows import ExportError
from mtlkit.workflows.onnx_export import INPUT_NAME, check_graph, onnx_graph

TRUNKS = {
    "mlp": ((32,), {"hidden": (64, 64)}),
    "cnn": ((1, 28, 28), {}),
    "lenet": ((1, 28, 28), {}),
    "resnet": ((1, 28, 28), {"width": 8, "blocks": (1, 1)}),
}
"""Trunk → (input shape, options)."""


def _model(sharing: str, trunk: str) -> torch.nn.Module:
    torch.manual_seed(0)
    shape, options = TRUNKS[trunk]
    body = create_backbone(trunk, shape, **options)
    heads = {
        "label": classification_head(body.out_features, 10),
        "value": classification_head(body.out_features, 1),
    }
    return create_model(sharing, body, heads, shape).eval()


def _measure(model, shape, folder: Path, batches, rounds, samples, clock) -> dict[str, object]:
    """Export, check, sizes and time ratios of one network."""
    graph = folder / "model.onnx"
    onnx_graph(model, shape, graph)
    check = check_graph(model, shape, graph)
    weights = folder / "model.safetensors"
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(tensors, str(weights))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(graph), options, ["CPUExecutionProvider"])
    ratios = {}
    for batch in batches:
        calls = max(1, samples // batch)
        inputs = torch.randn(batch, *shape)
        array = inputs.numpy()

        def pytorch(_: int, inputs: torch.Tensor = inputs, calls: int = calls) -> None:
            with torch.inference_mode():
                for _ in range(calls):
                    model(inputs)

        def runtime(_: int, array=array, calls: int = calls) -> None:
            for _ in range(calls):
                session.run(None, {INPUT_NAME: array})

        medians = interleaved_medians({"torch": pytorch, "ort": runtime}, rounds, clock)
        ratios[batch] = medians["ort"] / medians["torch"]
    return {
        "onnx_kib": graph.stat().st_size / 1024,
        "safetensors_kib": weights.stat().st_size / 1024,
        "difference": check.largest_difference,
        "tolerance": check.tolerance,
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trunks", nargs="+", choices=list(TRUNKS), default=list(TRUNKS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 256])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per network")
    parser.add_argument(
        "--samples",
        type=int,
        default=512,
        help="rows (or images) per timed round: 512 forward passes at batch 1, 2 at batch 256",
    )
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    torch.set_num_threads(args.threads or 1)
    print(machine())
    batches = " | ".join(f"ORT / PyTorch, batch {b}" for b in args.batches)
    print(f"sharing | trunk | ONNX KiB | safetensors KiB | max diff (allowed) | {batches}")
    print("|".join(["---"] * (5 + len(args.batches))))
    failures = []
    for trunk in args.trunks:
        for sharing in ARCHITECTURES:
            model = _model(sharing, trunk)
            with tempfile.TemporaryDirectory() as folder:
                try:
                    row = _measure(
                        model,
                        TRUNKS[trunk][0],
                        Path(folder),
                        args.batches,
                        args.rounds,
                        args.samples,
                        clock,
                    )
                except ExportError as error:
                    failures.append(f"{sharing} on {trunk}: {error}")
                    continue
            ratios = " | ".join(f"{row['ratios'][b]:.2f}" for b in args.batches)
            print(
                f"{sharing} | {trunk} | {row['onnx_kib']:.1f} | {row['safetensors_kib']:.1f} | "
                f"{row['difference']:.1e} ({row['tolerance']:.1e}) | {ratios}",
                flush=True,
            )
    print()
    print("did not export:" if failures else "every network exported.")
    for failure in failures:
        print(f"- {failure}")


if __name__ == "__main__":
    main()
