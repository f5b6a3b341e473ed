"""Training-step time of every registered balancing method, as a ratio to equal weighting (``ew``).

The seed CNN with K = 2 and K = 10 linear heads, batch 256 of 1×28×28 inputs, on CPU. One step is
what the trainer does: ``zero_grad``, forward (``encode`` + ``decode`` + K cross-entropies),
``balancer.backward(losses, shared_params, features)``, SGD step (model and balancer
parameters). Every method trains its own copy of the same initial network on the same batch; the
methods are timed round-robin (the order rotated every round) in one run, and each method's
median step time is divided by the median of ``ew``. Targets from the issue: gradient
aggregators ≤ 1.4× ``ew`` at K = 2, loss weightings ≤ 1.05×.

Run: ``python benchmarks/balancing.py`` (about 3 minutes on 2 cores) or ``--quick``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from mtlkit.balancing import Balancer, available, create
from mtlkit.models import HardSharing, classification_head, create_backbone

TARGETS = {"gradient aggregation": 1.4, "loss weighting": 1.05}
"""The issue's targets at K = 2, by family."""
REQUIRED_OPTIONS = {"fixed": lambda k: {"weights": [1.0] * k}}


def _balancer(name: str, num_tasks: int) -> Balancer:
    options = REQUIRED_OPTIONS[name](num_tasks) if name in REQUIRED_OPTIONS else {}
    return create(name, num_tasks=num_tasks, **options)


def _measure(num_tasks: int, rounds: int, clock, backbone: str) -> dict[str, float]:
    torch.manual_seed(0)
    trunk = create_backbone(backbone, 1, (28, 28))
    heads = {f"t{k}": classification_head(trunk.out_features, 10) for k in range(num_tasks)}
    template = HardSharing(trunk, heads)
    x = torch.randn(256, 1, 28, 28)
    ys = [torch.randint(0, 10, (256,)) for _ in range(num_tasks)]

    setups = {}
    for info in available():
        model = copy.deepcopy(template)
        balancer = _balancer(info.name, num_tasks)
        params = list(model.parameters()) + list(balancer.parameters())
        setups[info.name] = (model, balancer, torch.optim.SGD(params, lr=1e-3))

    def step(name: str) -> None:
        model, balancer, optimizer = setups[name]
        optimizer.zero_grad(set_to_none=True)
        z = model.encode(x)
        out = model.decode(z)
        losses = [F.cross_entropy(out[f"t{k}"], y) for k, y in enumerate(ys)]
        balancer.backward(losses, model.shared_parameters(), z)
        optimizer.step()

    names = list(setups)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 1):  # round 0 warms up (and lets stateful methods initialise)
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            step(name)
            elapsed = clock() - start
            if r > 0:
                times[name].append(elapsed)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 6")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--tasks", default="2,10", help="comma-separated K values")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall-clock time, or this process's CPU time (steadier on a shared machine; use "
        "with --threads 1)",
    )
    parser.add_argument("--backbone", default="cnn")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    rounds = args.rounds or (3 if args.quick else 6)
    ks = [int(k) for k in args.tasks.split(",")]
    infos = {info.name: info for info in available()}

    results = {}
    for k in ks:
        results[k] = _measure(k, rounds, clock, args.backbone)
        print(f"K={k}: ew step {results[k]['ew'] * 1e3:.1f} ms", flush=True)

    print(
        f"\n# training step / ew step (median of {rounds} interleaved rounds), {args.backbone}, "
        f"batch 256, CPU, {torch.get_num_threads()} threads, {args.clock} clock, "
        f"torch {torch.__version__}\n"
    )
    head = " | ".join(f"K={k}" for k in ks)
    print(f"| method | family | needs | {head} | target (K=2) |")
    print("|---|---|---|" + "---|" * len(ks) + "---|")
    order = sorted(infos, key=lambda n: (infos[n].family, n))
    for name in order:
        info = infos[name]
        cells = " | ".join(f"{results[k][name] / results[k]['ew']:.2f}" for k in ks)
        target = TARGETS.get(info.family)
        verdict = ""
        if target is not None and 2 in results:
            ratio = results[2][name] / results[2]["ew"]
            verdict = f"≤ {target} {'ok' if ratio <= target else 'MISSED'}"
        print(f"| {name} | {info.family} | {info.needs} | {cells} | {verdict} |")


if __name__ == "__main__":
    main()
