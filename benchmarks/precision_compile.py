"""Mixed precision and ``torch.compile``: epoch-time ratios, compile time and final accuracy after
the same epochs, on the seed CNN and multi-mnist.

    python benchmarks/precision_compile.py [--limit 6400] [--epochs 3] [--batch 256] [--test 5000]
        [--variants "ew fp32,ew bf16,ew compiled"]

Variants (each its own trainer from the same initial weights, data order and SGD settings):
``ew`` in fp32, bf16 autocast, fp32 with the encoder compiled (inductor); ``upgrad`` in fp32 and
bf16 (the gradient method under autocast). Epochs are interleaved (epoch e of every variant,
rotated each epoch). Throughput: the median epoch time after the first, as a ratio to the fp32
variant of the same method (> 1: faster). Compile time: the compiled variant's first epoch minus
its median later epoch. Accuracy: mean test accuracy after the last epoch (the first ``--test``
test samples), in points against the fp32 variant; a speed-up that costs more than 0.3 points
is flagged. (``weights_every``'s accuracy cost is measured on ``gradnorm-toy``:
``benchmarks/weights_every.py``.)
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable

import torch
from timing import add_timing_arguments, timing_setup

from mtlkit.balancing import create
from mtlkit.data import Split, TensorBatches, load_benchmark
from mtlkit.models import HardSharing, classification_head, create_backbone
from mtlkit.tasks import ClassificationTask
from mtlkit.training import Trainer

VARIANTS: dict[str, tuple[str, dict, dict]] = {
    "ew fp32": ("ew", {}, {}),
    "ew bf16": ("ew", {}, {"precision": "bf16"}),
    "ew compiled": ("ew", {}, {"compile": True}),
    "upgrad fp32": ("upgrad", {}, {}),
    "upgrad bf16": ("upgrad", {}, {"precision": "bf16"}),
}
"""label → (method, its options, Trainer options)."""


def _trainer(label: str, template: HardSharing, tasks: list[ClassificationTask]) -> Trainer:
    method, options, trainer_options = VARIANTS[label]
    model = copy.deepcopy(template)
    balancer = create(method, num_tasks=len(tasks), **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return Trainer(
        model, tasks, balancer, optimizer, channels_last=True, progress=False, **trainer_options
    )


def measure(
    train: Split,
    test: Split,
    epochs: int,
    clock: Callable[[], float],
    labels: list[str],
    batch: int = 256,
) -> list[str]:
    """Markdown rows: throughput ratio, compile time and accuracy per variant."""
    tasks = [ClassificationTask(t, 10) for t in train.targets]
    torch.manual_seed(0)
    trunk = create_backbone("cnn", tuple(train.inputs.shape[1:]))
    template = HardSharing(
        trunk, {t.name: classification_head(trunk.out_features, 10) for t in tasks}
    )
    trainers = {label: _trainer(label, template, tasks) for label in labels}
    times: dict[str, list[float]] = {label: [] for label in labels}
    for epoch in range(epochs):
        order = labels[epoch % len(labels) :] + labels[: epoch % len(labels)]
        for label in order:
            batches = TensorBatches(train, batch, shuffle=True, seed=0)
            batches.set_epoch(epoch)
            torch.manual_seed(epoch)
            start = clock()
            trainers[label].train_epoch(batches, epoch)
            times[label].append(clock() - start)
    accuracy = {}
    for label, trainer in trainers.items():
        reports = trainer.evaluate(TensorBatches(test, 1000))
        accuracy[label] = 100 * statistics.mean(
            float(r.summary()["accuracy"]) for r in reports.values()
        )
    rows = [
        f"seed CNN, multi-mnist {len(train)} training samples, batch {batch}, {epochs} epochs, "
        f"accuracy on {len(test)} test samples",
        "",
        "| variant | epoch throughput vs fp32 | compile time, s | mean test accuracy, % | "
        "vs fp32, points |",
        "|---|---|---|---|---|",
    ]
    for label in labels:
        reference = f"{VARIANTS[label][0]} fp32"
        later = statistics.median(times[label][1:])
        speed = statistics.median(times[reference][1:]) / later
        compiled = VARIANTS[label][2].get("compile", False)
        compile_time = f"{times[label][0] - later:.0f}" if compiled else "—"
        delta = accuracy[label] - accuracy[reference]
        flag = " (costs > 0.3)" if delta < -0.3 and speed > 1 else ""
        rows.append(
            f"| {label} | {speed:.2f}× | {compile_time} | {accuracy[label]:.2f} | "
            f"{delta:+.2f}{flag} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6400, help="training samples used")
    parser.add_argument("--test", type=int, default=5000, help="test samples scored")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    data = load_benchmark("multi-mnist", protocol="sener", seed=0, limit=args.limit)
    n = min(args.test, len(data.test))
    test = Split(data.test.inputs[:n], {t: y[:n] for t, y in data.test.targets.items()})
    labels = args.variants.split(",")
    print("\n".join(measure(data.train, test, args.epochs, clock, labels, args.batch)))


if __name__ == "__main__":
    main()
