"""mtlkit's balancing methods against torchjd's and LibMTL's, on the same network, batch and step.

    make bench-peers                      # builds .venv-bench, runs this, writes RESULTS-peers.md
    python benchmarks/peers.py [--quick] [--rounds N] [--methods ew,upgrad] [--out FILE]

The peers are libraries called as they are, from the bench environment ``.venv-bench`` (never
from mtlkit's dependencies): a peer that is not installed is reported as such.

For ``ew``, ``mgda``, ``pcgrad``, ``cagrad``, ``imtl-g``, ``nash-mtl`` and ``upgrad`` (each where
the peer has it, with mtlkit's default hyper-parameters), one training step — ``zero_grad``,
forward of the seed CNN trunk and two linear heads, the cross-entropies, the backward pass through
the method, an SGD step — is timed for

* mtlkit: ``balancer.backward(losses, shared_params, features)``;
* torchjd's ``mtl_backward`` + ``jac_to_grad`` with its aggregator, at every
  ``parallel_chunk_size`` that differs for K tasks (1 … K; the fastest is reported);
* torchjd's ``autogram`` engine (the Gramian of the trunk's Jacobian, the weighting's weights,
  one backward of Σ wₖLₖ) for the methods torchjd has as a Gramian weighting;
* LibMTL's weighting class (``LibMTL.weighting``), hosted by a small adapter that supplies what
  LibMTL's trainer would (see :class:`LibMTLHost`).

Every variant trains its own copy of the same initial network on the same batch of 256:
multi-mnist training samples when the base MNIST files are in the data dir, else random inputs;
of the first 8 batches, the first on which the two task gradients conflict at the initial weights
(where the methods differ most from a plain sum). Variants take turns, the order rotated every
round; each figure is a ratio of medians.

Agreement: from the same initial weights and batch, a fresh instance of each variant computes one
update; 1 − cosine between its shared-parameter gradient and mtlkit's, and the ratio of their
norms, are reported, beside 1 − cosine between mtlkit's update and its ``ew`` update (how much
the method changes the direction on this batch: the scale to read the peers' differences against).
The same check is repeated with a third head (the sum of the two digits modulo 10), where MGDA's
and PCGrad's iterations matter and LibMTL's CAGrad runs (``--no-agreement-k3`` skips it).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timing import add_timing_arguments, interleaved_medians, machine, timing_setup
from torch import Tensor, nn

from mtlkit.balancing import available, create
from mtlkit.data import load_benchmark, locate
from mtlkit.models import HardSharing, classification_head, create_backbone

METHODS = ("ew", "mgda", "pcgrad", "cagrad", "imtl-g", "nash-mtl", "upgrad")
BATCH = 256
CANDIDATES = 8
"""Batches searched for one whose task gradients conflict (see :func:`first_conflicting`)."""
LR = 1e-3
ROOT = Path(__file__).resolve().parent.parent

LIBMTL_CLASSES = {
    "ew": "EW",
    "mgda": "MGDA",
    "pcgrad": "PCGrad",
    "cagrad": "CAGrad",
    "imtl-g": "IMTL",
}
"""mtlkit's method → LibMTL's weighting class (LibMTL 1.1.5 has no Nash-MTL nor UPGrad)."""

WHAT_IS_COMPARED = {
    "ew": "the summed task gradients, one backward pass in mtlkit and LibMTL; torchjd has no "
    "loss-weighting path, so its ew is the Sum aggregator on the Jacobian (K backward passes; Sum "
    "is no Gramian weighting, so no autogram)",
    "mgda": "min-norm weights of the Gramian: mtlkit's exact 2-task solution, torchjd's "
    "Frank-Wolfe (tolerance 1e-3), LibMTL's closed form clipped to [0.001, 0.999]",
    "pcgrad": "the projected gradients; at K = 2 the random task order cannot change the result "
    "(each gradient is projected off the other one only)",
    "cagrad": "c = 0.4 everywhere; mtlkit rescales by 1/(1 + c²) (LibMTL's rescale=1), torchjd "
    "does not (cosine unaffected); the K×K solvers differ",
    "imtl-g": "LibMTL's IMTL is IMTL-L + IMTL-G: its loss scales start at 0 (factor 1), so its "
    "first update is IMTL-G's",
    "nash-mtl": "the first step of a stateful method, both from a fresh state: mtlkit solves "
    "Gα = 1/α by Newton's method to 1e-12, torchjd runs the paper's ≤ 20 cvxpy (ECOS) iterations; "
    "both clip the update's norm to 1",
    "upgrad": "the same dual-cone projections; mtlkit's own K×K solver against torchjd's quadprog",
}
"""Per method, what the agreement columns compare and why a small difference is expected."""

K3_NOTES = {
    "pcgrad": "the order in which each gradient is projected off the others matters, and each "
    "library draws its own (mtlkit from its seeded generator, torchjd from torch's global one, "
    "LibMTL from Python's `random`): differences up to the method's distance to ew can appear",
    "cagrad": "LibMTL solves the weights with scipy's SLSQP at its default tolerance, mtlkit and "
    "torchjd to about machine precision",
    "mgda": "torchjd's and LibMTL's Frank-Wolfe iterations stop at a tolerance (1e-3, 1e-5), "
    "mtlkit's solver at the exact min-norm point",
}
"""Per method, why the peers may differ from mtlkit at K = 3."""


@dataclass
class Variant:
    """One way to take a training step: a model copy, its optimizer and its backward pass."""

    model: HardSharing
    optimizer: torch.optim.Optimizer
    backward: Callable[[Tensor, dict[str, Tensor]], None]
    """Zero the gradients, forward, the task losses, and the backward pass through the method."""

    def step(self, x: Tensor, ys: dict[str, Tensor]) -> None:
        """One full training step."""
        self.backward(x, ys)
        self.optimizer.step()

    def shared_update(self, x: Tensor, ys: dict[str, Tensor]) -> Tensor:
        """The flat gradient of the shared parameters after one backward pass (float64)."""
        self.backward(x, ys)
        return torch.cat([p.grad.reshape(-1) for p in self.model.shared_parameters()]).double()


class Unavailable(Exception):
    """The peer does not offer the method (or is not installed)."""


def _forward(model: HardSharing, x: Tensor, ys: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
    z = model.encode(x)
    out = model.decode(z)
    return z, [F.cross_entropy(out[task], y) for task, y in ys.items()]


def _defaults() -> dict[str, dict[str, Any]]:
    """mtlkit's default hyper-parameters per method (the peers get the same)."""
    return {info.name: info.options for info in available()}


def mtlkit_variant(template: HardSharing, method: str) -> Variant:
    """mtlkit's balancer, as the trainer calls it."""
    model = copy.deepcopy(template)
    balancer = create(method, num_tasks=len(model.heads))
    params = list(model.parameters()) + list(balancer.parameters())
    optimizer = torch.optim.SGD(params, lr=LR)

    def backward(x: Tensor, ys: dict[str, Tensor]) -> None:
        optimizer.zero_grad(set_to_none=True)
        z, losses = _forward(model, x, ys)
        balancer.backward(losses, model.shared_parameters(), z)

    return Variant(model, optimizer, backward)


def _torchjd_aggregator(method: str, num_tasks: int) -> nn.Module:
    """torchjd's aggregator for ``method`` with mtlkit's default hyper-parameters."""
    try:
        from torchjd import aggregation
    except ImportError as error:
        raise Unavailable("torchjd is not installed") from error
    options = _defaults()
    nash = options["nash-mtl"]
    factories = {
        "ew": aggregation.Sum,
        "mgda": aggregation.MGDA,
        "pcgrad": aggregation.PCGrad,
        "cagrad": lambda: aggregation.CAGrad(c=options["cagrad"]["c"]),
        "imtl-g": aggregation.IMTLG,
        "nash-mtl": lambda: aggregation.NashMTL(
            n_tasks=num_tasks,
            max_norm=nash["max_norm"],
            update_weights_every=nash["update_weights_every"],
            optim_niter=nash["optim_niter"],
        ),
        "upgrad": aggregation.UPGrad,
    }
    if method not in factories:
        raise Unavailable(f"torchjd has no {method}")
    return factories[method]()


def torchjd_variant(template: HardSharing, method: str, chunk: int) -> Variant:
    """torchjd's ``mtl_backward`` (Jacobian of the trunk, ``chunk`` rows at a time) and
    ``jac_to_grad`` with its aggregator."""
    aggregator = _torchjd_aggregator(method, len(template.heads))
    from torchjd.autojac import jac_to_grad, mtl_backward

    model = copy.deepcopy(template)
    shared = list(model.shared_parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def backward(x: Tensor, ys: dict[str, Tensor]) -> None:
        optimizer.zero_grad(set_to_none=True)
        z, losses = _forward(model, x, ys)
        mtl_backward(losses, features=z, shared_params=shared, parallel_chunk_size=chunk)
        jac_to_grad(shared, aggregator)

    return Variant(model, optimizer, backward)


def autogram_variant(template: HardSharing, method: str) -> Variant:
    """torchjd's ``autogram``: the Gramian of the trunk's Jacobian, the weights, one backward."""
    aggregator = _torchjd_aggregator(method, len(template.heads))
    weighting = getattr(aggregator, "gramian_weighting", None)
    if method == "nash-mtl" or weighting is None:
        raise Unavailable(f"torchjd has no public Gramian weighting for {method}")
    from torchjd.autogram import Engine

    model = copy.deepcopy(template)
    engine = Engine(model.trunk, batch_dim=None)  # hooks the trunk's modules of this copy
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def backward(x: Tensor, ys: dict[str, Tensor]) -> None:
        optimizer.zero_grad(set_to_none=True)
        _, losses = _forward(model, x, ys)
        stacked = torch.stack(losses)
        stacked.backward(weighting(engine.compute_gramian(stacked)))

    return Variant(model, optimizer, backward)


def libmtl_weighting_package() -> types.ModuleType:
    """``LibMTL.weighting``, imported without running ``LibMTL/__init__.py``.

    The package's ``__init__`` imports its model zoo, which imports
    ``torchvision.models.utils``; torchvision is not installed here (and that module is gone
    from recent torchvision releases). The weighting classes import only torch, numpy and scipy,
    so the package is registered as a bare namespace and the subpackage imported from it.
    """
    if "LibMTL.weighting" in sys.modules:
        return sys.modules["LibMTL.weighting"]
    spec = importlib.util.find_spec("LibMTL")
    if spec is None or spec.submodule_search_locations is None:
        raise Unavailable("LibMTL is not installed")
    package = types.ModuleType("LibMTL")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("LibMTL", package)
    return importlib.import_module("LibMTL.weighting")


class LibMTLHost(nn.Module):
    """The attributes and methods that LibMTL's weighting mixins read from its trainer's model.

    LibMTL builds its model as a subclass of an architecture and a weighting class; its
    ``Trainer`` fixes ``device`` to ``cuda:0``. This host gives the weighting class, on CPU:
    ``task_num``, ``device``, ``rep_grad`` (gradients of the shared parameters, not of the
    representation), ``epoch``, and ``get_share_params`` / ``zero_grad_share_params`` over the
    trunk's parameters. The latter zeroes the gradients in place: LibMTL's own version calls
    ``Module.zero_grad()``, which sets them to ``None`` since torch 2.0, and LibMTL then writes
    the combined gradient through ``param.grad.data``.
    """

    def __init__(self, shared: list[nn.Parameter], num_tasks: int) -> None:
        super().__init__()
        self.task_num = num_tasks
        self.device = torch.device("cpu")
        self.rep_grad = False
        self.epoch = 0
        self.shared = shared  # a plain list: the host does not own the model's parameters

    def get_share_params(self) -> Iterator[nn.Parameter]:
        return iter(self.shared)

    def zero_grad_share_params(self) -> None:
        for param in self.shared:
            if param.grad is not None:
                param.grad.zero_()


def libmtl_variant(template: HardSharing, method: str) -> Variant:
    """LibMTL's weighting class on CPU, as its trainer drives it (losses stacked, kwargs)."""
    if method not in LIBMTL_CLASSES:
        raise Unavailable(f"LibMTL has no {method}")
    weighting = getattr(libmtl_weighting_package(), LIBMTL_CLASSES[method])
    model = copy.deepcopy(template)
    host_class = type(f"Hosted{weighting.__name__}", (LibMTLHost, weighting), {})
    host = host_class(list(model.shared_parameters()), len(model.heads))
    host.init_param()  # IMTL's loss scales
    options = _defaults()
    cagrad = options["cagrad"]
    kwargs = {
        "mgda": {"mgda_gn": options["mgda"]["normalization"]},
        "cagrad": {"calpha": cagrad["c"], "rescale": cagrad["rescale"]},
    }.get(method, {})
    optimizer = torch.optim.SGD(list(model.parameters()) + list(host.parameters()), lr=LR)

    def backward(x: Tensor, ys: dict[str, Tensor]) -> None:
        optimizer.zero_grad(set_to_none=True)
        _, losses = _forward(model, x, ys)
        host.backward(torch.stack(losses), **kwargs)

    return Variant(model, optimizer, backward)


def candidate_batches(size: int, count: int) -> tuple[list[tuple[Tensor, dict[str, Tensor]]], str]:
    """``count`` consecutive batches of multi-mnist's training split if MNIST is in the data dir,
    else of random inputs and labels; and a description of which."""
    if locate("mnist") is not None:
        data = load_benchmark("multi-mnist", protocol="sener", seed=0, limit=size * count).train
        x, ys, where = data.inputs, data.targets, "multi-mnist (sener, seed 0) training samples"
    else:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(size * count, 1, 28, 28, generator=gen)
        ys = {t: torch.randint(0, 10, (size * count,), generator=gen) for t in ("left", "right")}
        where = "random inputs and labels (MNIST not found in the data dir)"
    cuts = [slice(i * size, (i + 1) * size) for i in range(count)]
    return [(x[c], {t: y[c] for t, y in ys.items()}) for c in cuts], where


def first_conflicting(
    template: HardSharing, batches: list[tuple[Tensor, dict[str, Tensor]]]
) -> tuple[int, float]:
    """The first batch on which, at the template's weights, the two task gradients of the shared
    parameters have a negative inner product (PCGrad projects, every method departs from ``ew``),
    with that cosine; the first batch if none does."""
    shared = list(template.shared_parameters())
    cosines = []
    for x, ys in batches:
        _, losses = _forward(template, x, ys)
        rows = [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)])
            for loss in losses
        ]
        cosines.append(F.cosine_similarity(rows[0], rows[1], dim=0).item())
        if cosines[-1] < 0:
            return len(cosines) - 1, cosines[-1]
    return 0, cosines[0]


def template_model(tasks: list[str]) -> HardSharing:
    """The seed CNN trunk with one linear 10-way head per task, seeded."""
    torch.manual_seed(0)
    trunk = create_backbone("cnn", (1, 28, 28))
    return HardSharing(trunk, {t: classification_head(trunk.out_features, 10) for t in tasks})


PEERS = ("torchjd", "autogram", "libmtl")
"""The peer columns: torchjd's mtl_backward (best chunk), its autogram engine, LibMTL."""


def variants(
    template: HardSharing, method: str, chunks: Sequence[int] | None = None
) -> tuple[dict[str, Variant], dict[str, str]]:
    """Fresh instances of every variant of ``method``, keyed ``mtlkit``, ``torchjd/<chunk>``
    (``chunks``, by default 1 … K), ``autogram``, ``libmtl``; and, per peer column, why it has
    none."""
    builders: dict[str, Callable[[], Variant]] = {
        "mtlkit": lambda: mtlkit_variant(template, method)
    }
    for chunk in chunks or range(1, len(template.heads) + 1):
        builders[f"torchjd/{chunk}"] = lambda chunk=chunk: torchjd_variant(template, method, chunk)
    builders["autogram"] = lambda: autogram_variant(template, method)
    builders["libmtl"] = lambda: libmtl_variant(template, method)
    built: dict[str, Variant] = {}
    missing: dict[str, str] = {}
    for name, build in builders.items():
        try:
            built[name] = build()
        except Unavailable as why:
            missing.setdefault(name.split("/")[0], str(why))
    return built, missing


def _compare(update: Tensor, reference: Tensor) -> tuple[float, float]:
    """(1 − cosine, norm ratio) of two flat updates; 1 − cos as ½‖u/‖u‖ − r/‖r‖‖², which does
    not cancel for nearly parallel vectors."""
    gap = 0.5 * (update / update.norm() - reference / reference.norm()).norm().square()
    return gap.item(), (update.norm() / reference.norm()).item()


def agreement(
    built: dict[str, Variant], template: HardSharing, x: Tensor, ys: dict[str, Tensor]
) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """(1 − cosine, norm ratio) of each variant's first shared-parameter update against mtlkit's
    (every instance fresh: same weights, no state yet), and of mtlkit's against its ``ew``
    update (key ``"ew"``: how far the method moves from the plain sum, the scale that the peers'
    differences are to be read against); and the peers whose step raised, with the error."""
    reference = built["mtlkit"].shared_update(x, ys)
    results = {"ew": _compare(reference, mtlkit_variant(template, "ew").shared_update(x, ys))}
    failures = {}
    for name, variant in built.items():
        if name == "mtlkit":
            continue
        try:
            update = variant.shared_update(x, ys)
        except Exception as error:  # a peer's own bug: reported, not fatal to the benchmark
            failures[name] = f"{type(error).__name__}: {error}"
            continue
        results[name] = _compare(update, reference)
    return results, failures


@dataclass
class MethodResult:
    """Median step times, agreement and failures of one method's variants."""

    medians: dict[str, float]
    agreement: dict[str, tuple[float, float]]
    missing: dict[str, str]
    failures: dict[str, str]

    def best(self, peer: str) -> tuple[str, float] | None:
        """The fastest timed variant of a peer column (torchjd: over its chunk sizes)."""
        timed = {n: t for n, t in self.medians.items() if n.split("/")[0] == peer}
        return min(timed.items(), key=lambda item: item[1]) if timed else None


def measure(
    method: str,
    template: HardSharing,
    x: Tensor,
    ys: dict[str, Tensor],
    rounds: int,
    clock: Callable[[], float],
) -> MethodResult:
    """Agreement of the fresh instances, then interleaved step times of those that worked."""
    built, missing = variants(template, method)
    agree, failures = agreement(built, template, x, ys)
    runners = {
        name: (lambda _round, v=v: v.step(x, ys))
        for name, v in built.items()
        if name not in failures
    }
    return MethodResult(interleaved_medians(runners, rounds, clock), agree, missing, failures)


def _peer_cells(result: MethodResult, peer: str, footnotes: list[str], method: str) -> list[str]:
    best = result.best(peer)
    if best is None:
        failed = [n for n in result.failures if n.split("/")[0] == peer]
        if failed:
            footnotes.append(f"{peer} {method}: {result.failures[failed[0]]}")
            return [f"fails [{len(footnotes)}]", "—"]
        return ["—", "—"]
    name, seconds = best
    own = result.medians["mtlkit"]
    ratio = f"{seconds / own:.2f}×"
    if peer == "torchjd":
        others = [
            f"{n.split('/')[1]}: {t / own:.2f}×"
            for n, t in result.medians.items()
            if n.startswith("torchjd/") and n != name
        ]
        ratio += f" (chunk {name.split('/')[1]}; " + ", ".join(others) + ")"
    return [ratio, _gap_cell(result.agreement, name)]


def _gap_cell(agree: dict[str, tuple[float, float]], name: str) -> str:
    gap, norm = agree[name]
    return f"{gap:.0e} (‖·‖ {norm:.2f})"


def with_sum_task(ys: dict[str, Tensor]) -> dict[str, Tensor]:
    """``ys`` plus a third task derived from the first two: their labels' sum modulo 10."""
    first, second = list(ys.values())[:2]
    return {**ys, "sum": (first + second) % 10}


def three_task_agreement(methods: list[str], x: Tensor, ys: dict[str, Tensor]) -> list[str]:
    """Agreement only (no timing) with a third head on the same trunk and batch: K = 3 is where
    MGDA's and PCGrad's iterations start to matter and where LibMTL's CAGrad runs."""
    ys = with_sum_task(ys)
    template = template_model(list(ys))
    rows = [
        "| method | 1 − cos to ew | torchjd | torchjd autogram | LibMTL |",
        "|---|---|---|---|---|",
    ]
    footnotes: list[str] = []
    for method in methods:
        built, _ = variants(template, method, chunks=(1,))
        agree, failures = agreement(built, template, x, ys)
        cells = [f"{agree['ew'][0]:.0e}"]
        for name in ("torchjd/1", "autogram", "libmtl"):
            if name in agree:
                cells.append(_gap_cell(agree, name))
            elif name in failures:
                footnotes.append(f"{name.split('/')[0]} {method}: {failures[name]}")
                cells.append(f"fails [{len(footnotes)}]")
            else:
                cells.append("—")
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    if footnotes:
        rows += ["", *(f"[{i}] {note}" for i, note in enumerate(footnotes, start=1))]
    notes = [f"- {m}: {K3_NOTES[m]}" for m in methods if m in K3_NOTES]
    return rows + (["", "Where a difference is expected at K = 3:", "", *notes] if notes else [])


def table(results: dict[str, MethodResult]) -> list[str]:
    """The Markdown table: times as ratios to mtlkit's same method, cosines, footnotes."""
    ew = results["ew"].medians["mtlkit"] if "ew" in results else None
    rows = [
        "| method | mtlkit / mtlkit ew | 1 − cos to ew | torchjd mtl_backward / mtlkit | 1 − cos | "
        "torchjd autogram / mtlkit | 1 − cos | LibMTL / mtlkit | 1 − cos |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    footnotes: list[str] = []
    for method, result in results.items():
        own = f"{result.medians['mtlkit'] / ew:.2f}×" if ew else "—"
        cells = [own, f"{result.agreement['ew'][0]:.0e}"]
        for peer in PEERS:
            cells += _peer_cells(result, peer, footnotes, method)
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    rows += [
        "",
        "1 − cos: one minus the cosine between the peer's and mtlkit's update of the shared "
        "parameters from the same weights and batch (‖·‖: the ratio of their norms); "
        '"to ew": between mtlkit\'s update and its plain-sum (ew) update, how far the method '
        "moves from ew on this batch, the scale to read the peers' differences against.",
    ]
    rows += [f"[{i}] {note}" for i, note in enumerate(footnotes, start=1)]
    rows += ["", "What is compared, and why the updates may differ slightly:", ""]
    rows += [f"- {m}: {WHAT_IS_COMPARED[m]}" for m in results]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS-peers.md"))
    parser.add_argument("--quick", action="store_true", help="2 rounds: a smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--no-agreement-k3",
        dest="agreement_k3",
        action="store_false",
        help="skip the agreement check with a third task",
    )
    add_timing_arguments(parser)
    parser.set_defaults(threads=1)
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {','.join(METHODS)}")
    clock = timing_setup(args)
    rounds = args.rounds or (2 if args.quick else 5)
    batches, where = candidate_batches(BATCH, CANDIDATES)
    template = template_model(list(batches[0][1]))
    index, conflict = first_conflicting(template, batches)
    x, ys = batches[index]
    start = time.perf_counter()
    lines = [
        "# mtlkit and its peers",
        "",
        "Written by `make bench-peers` (`python benchmarks/peers.py`); see the Peers section of "
        "docs/performance.md.",
        "",
        f"Machine: {machine()}.",
        "",
        f"Seed CNN trunk + {len(ys)} linear heads; one batch of {BATCH} {where}, number "
        f"{index} of {CANDIDATES} (the first whose task gradients conflict at the initial "
        f"weights: cosine {conflict:.3f}); one training step "
        f"(zero_grad, forward, losses, backward through the method, SGD step); medians of "
        f"{rounds} interleaved rounds, {args.clock} clock; {_versions()}.",
    ]
    if args.quick:
        lines += ["", f"**Quick smoke run ({rounds} rounds): figures not for quoting.**"]
    results = {}
    for method in methods:
        results[method] = measure(method, template, x, ys, rounds, clock)
        print(f"{method}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    lines += ["", "## Step time and agreement at K = 2", "", *table(results)]
    if args.agreement_k3:
        lines += [
            "",
            "## Agreement at K = 3",
            "",
            "The same trunk, batch and initial weights with a third head whose label is the sum "
            "of the two digits modulo 10; one update from fresh instances, no timing.",
            "",
            *three_task_agreement(methods, x, ys),
        ]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines += [
        "",
        f"({time.perf_counter() - start:.0f} s; load average at the end: {load}.)",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("torchjd", "LibMTL"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


if __name__ == "__main__":
    main()
