"""A CPU training step with freed memory handed back to the system against kept in the process
(``mtlkit.training.host_memory``).

    python benchmarks/host_memory.py [--rounds 4] [--steps 12] [--threads 1] [--batch 256]

The network is the demo's (``configs/multi-mnist.yaml``): the seed CNN's convolutions shared,
a 256-unit hidden layer with batch norm in each of two heads, SGD with momentum, channels-last,
random 28×28 inputs. Each measurement is a process of its own (the allocator's setting is
process-wide, and glibc's own adaptive thresholds cannot be restored once set); the processes
alternate, their order rotated each round, so that a slow spell of a shared machine falls on
every variant. Printed per variant: the median step time over rounds (each round's figure the
median of its steps), the page faults per step, and the time kept / handed back.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from timing import machine

VARIANTS = {"handed back": False, "kept": True}  # name: keep freed memory in the process


def measure(steps: int, batch: int) -> dict[str, float]:
    """This process's median step time (s) and page faults per step."""
    from mtlkit.models import HardSharing, classification_head, create_backbone
    from mtlkit.training import retain_freed_memory

    if retain_freed_memory() != (os.environ["MTLKIT_RETAIN_FREED_MEMORY"] == "1"):
        raise SystemExit("the allocator's thresholds could not be set on this system")
    torch.manual_seed(0)
    trunk = create_backbone("cnn", (1, 28, 28), batch_norm=True, fc=False)
    heads = {
        t: classification_head(trunk.out_features, 10, 256, batch_norm=True)
        for t in ("left", "right")
    }
    model = HardSharing(trunk, heads).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad()
        outputs = model(x)
        sum(F.cross_entropy(out, y) for out in outputs.values()).backward()
        optimizer.step()

    for _ in range(3):
        step()
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"time": statistics.median(times), "faults": faults / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.steps, args.batch)))
        return
    print(machine())
    names = list(VARIANTS)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            keep = VARIANTS[name]
            env = {**os.environ, "MTLKIT_RETAIN_FREED_MEMORY": str(int(keep))}
            child = [sys.executable, __file__, "--child"]
            child += ["--steps", str(args.steps), "--threads", str(args.threads)]
            child += ["--batch", str(args.batch)]
            out = subprocess.run(child, env=env, capture_output=True, text=True, check=True)
            results[name].append(json.loads(out.stdout))
    handed_back = statistics.median(m["time"] for m in results["handed back"])
    print(f"\n{'freed memory':14} {'step (ms)':>10} {'faults/step':>12} {'time ratio':>11}")
    for name in names:
        step = statistics.median(m["time"] for m in results[name])
        faults = statistics.median(m["faults"] for m in results[name])
        print(f"{name:14} {step * 1000:10.1f} {faults:12.0f} {step / handed_back:11.2f}")


if __name__ == "__main__":
    main()
