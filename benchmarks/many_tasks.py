"""Many tasks: step time and peak memory against K for ``ew``, a Gramian method, a full-Jacobian
method and the cheaper large-K option (a Gramian method solved every n steps); with
``--variants gramian-paths``, UPGrad's full-Jacobian path against its layer-wise one.

    python benchmarks/many_tasks.py [--ks 2,5,10,20,40,100] [--batch 64] [--rounds 3]
        [--trunks cnn,mlp,resnet] [--variants many-tasks|gramian-paths]

K synthetic 10-way heads on the seed CNN (1×28×28 inputs) and on the MLP (784 → 128 → 128), one
training step (forward, ``balancer.backward``, SGD step) per variant, interleaved per K (rotated
each round); the step time is the median over rounds as a ratio to ``ew``'s at the same K.
``upgrad/10`` is ``create("upgrad", weights_every=10)``: its median over 10 consecutive steps
(one solve, nine reuses) is what it costs on average. Peak memory is measured in a fresh
process per variant, K increasing: the peak resident size (``VmHWM``, reset before the first
step) after two steps at K, minus the resident size before the first step (model and data
included from there on: the heads' parameters grow with K too).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import add_timing_arguments, timing_setup

from mtlkit.balancing import create
from mtlkit.models import HardSharing, classification_head, create_backbone

VARIANTS = {
    "ew": ("ew", {}),
    "upgrad (Gramian)": ("upgrad", {}),
    "moco (Jacobian)": ("moco", {}),
    "upgrad/10 (weights_every=10)": ("upgrad", {"weights_every": 10}),
}
GRAMIAN_PATHS = {
    "ew": ("ew", {}),
    "upgrad, full J": ("upgrad", {"gramian_path": "full"}),
    "upgrad, layers": ("upgrad", {"gramian_path": "layers"}),
}
VARIANT_SETS = {"many-tasks": VARIANTS, "gramian-paths": GRAMIAN_PATHS}
"""The variants each comparison runs, by name (the memory probe runs in a child process)."""
TRUNKS = {
    "cnn": ("cnn", {}),
    "mlp": ("mlp", {"hidden": [128, 128]}),
    "resnet": ("resnet", {"width": 64, "blocks": [1, 1, 2, 1]}),
}
"""Name → (backbone, options); ``resnet`` has 6.1 M parameters."""


def _stepper(
    trunk: str, k: int, variant: str, batch: int, variants: str = "many-tasks"
) -> Callable[[], None]:
    """One training step of ``variant`` (of the set ``variants``) with K heads on ``trunk``
    (fixed data)."""
    torch.manual_seed(0)
    backbone, backbone_options = TRUNKS[trunk]
    body = create_backbone(backbone, (1, 28, 28), **backbone_options)
    model = HardSharing(
        body, {f"t{i}": classification_head(body.out_features, 10) for i in range(k)}
    )
    name, options = VARIANT_SETS[variants][variant]
    balancer = create(name, num_tasks=k, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (k, batch), generator=gen)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        features = model.encode(x)
        outputs = model.decode(features)
        losses = [F.cross_entropy(outputs[f"t{i}"], y[i]) for i in range(k)]
        balancer.backward(losses, model.shared_parameters(), features)
        optimizer.step()

    return step


def step_times(
    trunk: str,
    ks: list[int],
    batch: int,
    rounds: int,
    clock: Callable[[], float],
    variants: str = "many-tasks",
) -> dict[int, dict[str, float]]:
    """Per K, each variant's median step time over ``ew``'s."""
    ratios: dict[int, dict[str, float]] = {}
    chosen = VARIANT_SETS[variants]
    for k in ks:
        steppers = {v: _stepper(trunk, k, v, batch, variants) for v in chosen}
        times: dict[str, list[float]] = {v: [] for v in chosen}
        for r in range(rounds + 1):  # round 0 warms up
            names = list(steppers)
            for v in names[r % len(names) :] + names[: r % len(names)]:
                repeats = 10 if "weights_every" in str(chosen[v][1]) else 1
                per_step = []
                for _ in range(repeats):
                    start = clock()
                    steppers[v]()
                    per_step.append(clock() - start)
                if r > 0:
                    times[v].append(statistics.mean(per_step))
        ew = statistics.median(times["ew"])
        ratios[k] = {v: statistics.median(t) / ew for v, t in times.items()}
    return ratios


def peak_memory(
    trunk: str, ks: list[int], batch: int, variants: str = "many-tasks"
) -> dict[int, dict[str, float]]:
    """Per K, each variant's extra peak resident memory (MiB) over a step, from a fresh process."""
    result: dict[int, dict[str, float]] = {k: {} for k in ks}
    for variant in VARIANT_SETS[variants]:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", trunk, variants, variant, str(batch)]
            + [str(k) for k in ks],
            capture_output=True,
            text=True,
            check=True,
        )
        for k, mib in json.loads(out.stdout.splitlines()[-1]).items():
            result[int(k)][variant] = mib
    return result


def _resident_kib() -> tuple[int, int]:
    """This process's (peak, current) resident memory in KiB, from ``/proc/self/status``."""
    status = open("/proc/self/status").read()
    return tuple(int(re.search(rf"{key}:\s+(\d+)", status).group(1)) for key in ("VmHWM", "VmRSS"))


def _memory_child(trunk: str, variants: str, variant: str, batch: int, ks: list[int]) -> None:
    """Run in a fresh process, K increasing: the peak resident memory of two steps at each K
    over the resident memory before the first step (the peak is reset there)."""
    peaks = {}
    baseline = None
    for k in ks:
        step = _stepper(trunk, k, variant, batch, variants)
        if baseline is None:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak to the current resident size
            baseline = _resident_kib()[1]
        step()
        step()
        peaks[k] = max(_resident_kib()[0] - baseline, 0) / 1024
    print(json.dumps(peaks))


def measure(
    ks: list[int],
    batch: int,
    rounds: int,
    clock: Callable[[], float],
    trunks: list[str],
    variants: str = "many-tasks",
) -> list[str]:
    """Markdown tables: step time over ``ew`` and extra peak memory, per trunk and K."""
    rows = []
    chosen = VARIANT_SETS[variants]
    for trunk in trunks:
        times = step_times(trunk, ks, batch, rounds, clock, variants)
        memory = peak_memory(trunk, ks, batch, variants)
        rows += [
            "",
            f"{trunk}, batch {batch}: step time / ew's at the same K "
            "(extra peak memory of a step, MiB, in brackets)",
            "",
            "| K | " + " | ".join(chosen) + " |",
            "|---|" + "---|" * len(chosen),
        ]
        for k in ks:
            cells = [f"{times[k][v]:.2f}× ({memory[k][v]:.0f})" for v in chosen]
            rows.append(f"| {k} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        trunk, variants, variant, batch, *ks = sys.argv[2:]
        torch.set_num_threads(1)
        _memory_child(trunk, variants, variant, int(batch), [int(k) for k in ks])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="2,5,10,20,40,100")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trunks", default="cnn,mlp", help=f"of {', '.join(TRUNKS)}")
    parser.add_argument("--variants", default="many-tasks", choices=list(VARIANT_SETS))
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    ks = [int(k) for k in args.ks.split(",")]
    trunks = args.trunks.split(",")
    print("\n".join(measure(ks, args.batch, args.rounds, clock, trunks, args.variants)))


if __name__ == "__main__":
    main()
