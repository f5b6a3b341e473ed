"""Training-step time of every registered balancing method, as a ratio to equal weighting (``ew``).

The seed CNN with K = 2 and K = 10 linear heads, batch 256 of 1×28×28 inputs, on CPU. One step is
what the trainer does: ``zero_grad``, forward (``encode`` + ``decode`` + K cross-entropies),
``balancer.backward(losses, shared_params, features)``, SGD step (model and balancer
parameters). Every method trains its own copy of the same initial network on the same batch; the
methods are timed round-robin (the order rotated every round) in one run, and each method's
median step time is divided by the median of ``ew``. Two peers are timed beside them on the same
network and batch: LibMTL-style plumbing (K full backward passes, gradients copied out of
``.grad``) and torchjd's ``mtl_backward`` + ``jac_to_grad(UPGrad())`` (when installed).
Targets from the issue: gradient aggregators ≤ 1.4× ``ew`` at K = 2, loss weightings ≤ 1.05×.

Run: ``python benchmarks/balancing.py`` (about 3 minutes on 2 cores) or ``--quick``.
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
import torch.nn.functional as F
from timing import add_timing_arguments, timing_setup

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
    trunk = create_backbone(backbone, (1, 28, 28))
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

    references = _references(template, num_tasks)
    setups.update({name: setup for name, (setup, _) in references.items()})
    steps = {name: run for name, (_, run) in references.items()}

    def timed_step(name: str) -> None:
        if name in steps:
            steps[name](*setups[name], x, ys)
        else:
            step(name)

    names = list(setups)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 1):  # round 0 warms up (and lets stateful methods initialise)
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            timed_step(name)
            elapsed = clock() - start
            if r > 0:
                times[name].append(elapsed)
    return {n: statistics.median(t) for n, t in times.items()}


def _libmtl_style_step(model, _balancer, optimizer, x, ys) -> None:
    """LibMTL's plumbing for gradient methods: K full backward passes, each task's shared
    gradient copied out of ``.grad`` into a flat vector, the mean written back."""
    optimizer.zero_grad(set_to_none=True)
    z = model.encode(x)
    out = model.decode(z)
    losses = [F.cross_entropy(out[f"t{k}"], y) for k, y in enumerate(ys)]
    shared = list(model.shared_parameters())
    rows = []
    for k, loss in enumerate(losses):
        loss.backward(retain_graph=k < len(losses) - 1)
        rows.append(torch.cat([p.grad.reshape(-1).clone() for p in shared]))
        for p in shared:
            p.grad = None
    direction = torch.stack(rows).mean(0)
    offset = 0
    for p in shared:
        p.grad = direction[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    optimizer.step()


def _torchjd_step(model, aggregator, optimizer, x, ys) -> None:
    """torchjd 0.18's own path: ``mtl_backward`` then ``jac_to_grad`` with its aggregator."""
    from torchjd.autojac import jac_to_grad, mtl_backward

    optimizer.zero_grad(set_to_none=True)
    z = model.encode(x)
    out = model.decode(z)
    losses = [F.cross_entropy(out[f"t{k}"], y) for k, y in enumerate(ys)]
    shared = list(model.shared_parameters())
    mtl_backward(losses, features=z, shared_params=shared)
    jac_to_grad(shared, aggregator)
    optimizer.step()


def _references(template: HardSharing, num_tasks: int) -> dict:
    """Peer implementations timed beside ours: LibMTL-style plumbing, and torchjd if installed."""
    refs = {}
    model = copy.deepcopy(template)
    refs["ref: libmtl-style"] = (
        (model, None, torch.optim.SGD(model.parameters(), lr=1e-3)),
        _libmtl_style_step,
    )
    try:
        from torchjd.aggregation import UPGrad

        UPGrad()(torch.eye(2))  # needs torchjd's optional QP solver
    except Exception:  # torchjd is a dev-only reference; skip it when absent or incomplete
        return refs
    model = copy.deepcopy(template)
    refs["ref: torchjd upgrad"] = (
        (model, UPGrad(), torch.optim.SGD(model.parameters(), lr=1e-3)),
        _torchjd_step,
    )
    return refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 6")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--tasks", default="2,10", help="comma-separated K values")
    add_timing_arguments(parser)
    parser.add_argument("--backbone", default="cnn")
    args = parser.parse_args()
    clock = timing_setup(args)
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
    for name in [n for n in results[ks[0]] if n.startswith("ref: ")]:
        cells = " | ".join(f"{results[k][name] / results[k]['ew']:.2f}" for k in ks)
        print(f"| {name} | reference | jacobian | {cells} | |")
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
