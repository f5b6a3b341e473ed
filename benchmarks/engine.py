"""Per-step cost of the balancing engine's strategies, as a ratio to a plain ``sum(losses)`` step.

For the LeNet and seed-CNN trunks with K = 2, 10, 40 linear heads, batch 256 of 1×28×28 inputs,
one step is forward + ``balancer.backward`` (no optimiser). Every variant is timed in the same
run, interleaved (round-robin over the variants, rotated each round), and the median per variant
is divided by the median of the ``ew`` step (forward + ``sum(losses).backward()``). Variants:

* ``jac-*``: a Jacobian aggregator (the mean of the rows) — the engine materialises J;
* ``gram-*``: a Gramian weighting (fixed weights read off G) — J, then G = J Jᵀ, then wᵀJ;
* ``*-loop`` / ``*-batched``: the strategy, forced;
* ``*+z``: the training loop passes ``features`` (the engine splits the graph at z), otherwise
  the engine differentiates each loss through the whole graph;
* ``autogram``: torchjd's layer-by-layer Gramian engine (``torchjd.autogram``) with weights from
  G and one backward of Σ wₖLₖ, when torchjd is installed (a peer reference; K ≤ 10 only).

It prints which strategy was fastest for each setting and whether that is the default
(``Engine().strategy``, ``"loop"``).

Run: ``python benchmarks/engine.py`` (about 2–3 minutes on 2 cores) or ``--quick``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import add_timing_arguments, timing_setup
from torch import Tensor

from mtlkit.balancing.base import GradientAggregator, GramianWeighting
from mtlkit.balancing.engine import STRATEGIES, Engine
from mtlkit.models import HardSharing, classification_head, create_backbone


class _MeanRows(GradientAggregator):
    """A Jacobian aggregator for timing: the mean of the task gradients."""

    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        return jacobian.mean(dim=0)


class _FixedGramian(GramianWeighting):
    """A Gramian weighting for timing: weights 1/K whatever the Gramian (but G is computed)."""

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        k = gramian.shape[0]
        return torch.full((k,), 1.0 / k, dtype=gramian.dtype, device=gramian.device)


def _model(backbone: str, num_tasks: int) -> HardSharing:
    trunk = create_backbone(backbone, (1, 28, 28))
    heads = {f"t{k}": classification_head(trunk.out_features, 10) for k in range(num_tasks)}
    return HardSharing(trunk, heads)


def _variants(
    model: HardSharing, x: Tensor, y: Tensor, with_autogram: bool
) -> dict[str, Callable[[], None]]:
    def forward() -> tuple[Tensor, list[Tensor]]:
        z = model.encode(x)
        out = model.decode(z)
        return z, [F.cross_entropy(o, y) for o in out.values()]

    def ew() -> None:
        _, losses = forward()
        torch.stack(losses).sum().backward()

    def engine_step(balancer: GradientAggregator, with_features: bool) -> Callable[[], None]:
        def step() -> None:
            z, losses = forward()
            balancer.backward(losses, model.shared_parameters(), z if with_features else None)

        return step

    variants: dict[str, Callable[[], None]] = {"ew": ew}
    for need, cls in (("jac", _MeanRows), ("gram", _FixedGramian)):
        for strategy in ("loop", "batched"):
            for with_features in (False, True):
                balancer = cls()
                balancer.engine = Engine(strategy=strategy)
                name = f"{need}-{strategy}{'+z' if with_features else ''}"
                variants[name] = engine_step(balancer, with_features)
    try:
        from torchjd.autogram import Engine as AutogramEngine
    except ImportError:
        return variants
    if not with_autogram:
        return variants
    hooked = copy.deepcopy(model)  # autogram hooks every forward of the modules it is given
    autogram = AutogramEngine(hooked.trunk, batch_dim=None)
    weighting = _FixedGramian()

    def autogram_step() -> None:
        out = hooked(x)
        stacked = torch.stack([F.cross_entropy(o, y) for o in out.values()])
        gramian = autogram.compute_gramian(stacked)
        stacked.backward(weighting.weights_from_gramian(gramian))

    variants["autogram"] = autogram_step
    return variants


def _time(
    variants: dict[str, Callable[[], None]],
    model: torch.nn.Module,
    rounds: int,
    clock: Callable[[], float],
    warmup: bool,
) -> dict[str, float]:
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    start_round = 0 if warmup else 1
    for r in range(start_round, rounds + 1):  # round 0 warms up
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            model.zero_grad(set_to_none=True)
            start = clock()
            variants[name]()
            elapsed = clock() - start
            if r > 0:
                times[name].append(elapsed)
    return {n: statistics.median(t) for n, t in times.items()}


def _geomean(medians: dict[str, float], strategy: str) -> float:
    values = [v for n, v in medians.items() if n.split("-", 1)[-1].startswith(strategy)]
    return statistics.geometric_mean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, K = 2 and 10 only")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per setting")
    add_timing_arguments(parser)
    parser.add_argument("--backbones", default="lenet,cnn")
    parser.add_argument("--tasks", default=None, help="comma-separated K values")
    args = parser.parse_args()
    clock = timing_setup(args)
    ks = [int(k) for k in (args.tasks or ("2,10" if args.quick else "2,10,40")).split(",")]
    torch.manual_seed(0)
    x = torch.randn(256, 1, 28, 28)
    y = torch.randint(0, 10, (256,))
    print(
        f"# engine strategies: step time / ew step time (median of interleaved rounds), "
        f"batch 256, CPU, {torch.get_num_threads()} threads, {args.clock} clock, "
        f"torch {torch.__version__}\n"
    )
    rows = []
    header: list[str] = []
    for backbone in args.backbones.split(","):
        for k in ks:
            model = _model(backbone, k)
            big = k >= 40  # seconds per step: no warm-up round, no torchjd reference
            variants = _variants(model, x, y, with_autogram=not big)
            rounds = args.rounds or (3 if args.quick else 2 if big else 4 if k >= 10 else 7)
            medians = _time(variants, model, rounds, clock, warmup=not big)
            base = medians["ew"]
            header = header or list(medians)
            rows.append((backbone, k, base, {n: medians[n] / base for n in medians}))
            fastest = min(STRATEGIES, key=lambda s: _geomean(medians, s))
            default = Engine().strategy
            note = "" if default == fastest else "  <-- not the default"
            print(
                f"{backbone} K={k}: ew {base * 1e3:.1f} ms; fastest strategy {fastest} "
                f"(geometric mean over jac/gram, with/without z); default {default}{note}",
                flush=True,
            )
    print()
    print("| backbone | K | ew ms | " + " | ".join(header[1:]) + " |")
    print("|---|---|---|" + "---|" * (len(header) - 1))
    for backbone, k, base, ratios in rows:
        cells = " | ".join(f"{ratios[n]:.2f}" if n in ratios else "-" for n in header[1:])
        print(f"| {backbone} | {k} | {base * 1e3:.1f} | {cells} |")


if __name__ == "__main__":
    main()
