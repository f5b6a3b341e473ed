"""UPGrad's K×K solves at many tasks: where the time goes, and the interior point before and after
issue 23's solver work (LU on fresh copies → Cholesky in place), in the same run.

    python benchmarks/gramian_solver.py [--ks 10,40,100] [--rounds 5] [--step-k 100]
        [--batch 16] [--step-rounds 2] [--threads 1] [--clock cpu]

The solver *before* is the interior point of commit ``BEFORE`` (read with ``git show``, so this
needs the git checkout), swapped in for the current one behind ``solve_nonneg_qp``: everything
else (scaling, cosine matrix, snapping) is the same code in both. For each K, on a full-rank and
a rank-deficient seeded Gramian (rank 0.3·K, gradients pulled towards a common direction so that
the projections are not 0): UPGrad's weights, median time before over after (interleaved), and
the largest difference of the K projected directions ``Jᵀvᵢ`` between the two, relative to
‖gᵢ‖ (the solver's tolerance allows 1e-6); then torch.profiler's breakdown of one solve, the
current one (top operators by self CPU time). Last, UPGrad's whole training step on the seed CNN
at K = ``--step-k`` (``many_tasks.py``'s step), before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import types
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
from many_tasks import _stepper
from timing import add_timing_arguments, interleaved_medians, load_average, timing_setup
from torch.profiler import ProfilerActivity, profile

import mtlkit.balancing.solvers.nonneg_qp as nonneg_qp
from mtlkit.balancing import create
from mtlkit.balancing.solvers.dual_cone import dual_cone_weights

BEFORE = "2b43f8fd2bdd70eecfb7523af3d05bd81c63a278"
"""The last commit with the LU interior point (main before issue 23's solver work)."""
SOLVER_PATH = "src/mtlkit/balancing/solvers/interior_point.py"
ROOT = Path(__file__).resolve().parent.parent
PROFILE_ROWS = 4
PROFILE_WORK = 20_000
"""Each profile covers PROFILE_WORK // K² solves (at least 3): enough time at small K that the
scheduler's preemptions on a shared machine do not decide the shares of the small operators."""


def solver_before() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``qp_interior_point`` as it was at ``BEFORE``, loaded into a private module."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BEFORE}:{SOLVER_PATH}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(
            f"gramian_solver.py needs the git history (commit {BEFORE[:10]}) to load the solver "
            f"before issue 23; run it from a git checkout of mtlkit ({err})."
        ) from err
    module = types.ModuleType("interior_point_before")
    exec(compile(source, f"{BEFORE[:10]}:{SOLVER_PATH}", "exec"), module.__dict__)
    return module.qp_interior_point


@contextlib.contextmanager
def solver(qp: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Run the QPs behind ``solve_nonneg_qp`` with ``qp`` inside the block."""
    current = nonneg_qp.qp_interior_point
    nonneg_qp.qp_interior_point = qp
    try:
        yield
    finally:
        nonneg_qp.qp_interior_point = current


def gradients(k: int, rank: int, seed: int = 0) -> torch.Tensor:
    """K seeded gradients of length 200 and the given rank (+1 if rank < K: a shared direction
    that keeps the dual cone wide, so that the projections are not 0)."""
    gen = torch.Generator().manual_seed(seed)
    jac = torch.randn(k, rank, generator=gen, dtype=torch.float64)
    jac = jac @ torch.randn(rank, 200, generator=gen, dtype=torch.float64)
    if rank < k:
        jac += 2.0 * torch.randn(200, generator=gen, dtype=torch.float64)
    return jac


def _breakdown(run: Callable[[], object], runs: int) -> str:
    """The top operators of ``runs`` calls of ``run`` by self CPU time, as shares of the total."""
    run()  # warm-up, outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = [f"{e.key.removeprefix('aten::')} {e.self_cpu_time_total / total:.0%}" for e in events]
    return ", ".join(top[:PROFILE_ROWS])


def measure_weights(ks: list[int], rounds: int, clock: Callable[[], float]) -> list[str]:
    """Per K and Gramian, UPGrad's weights: time before / after, the directions' largest
    difference, and where the time goes now."""
    before, after = solver_before(), nonneg_qp.qp_interior_point
    upgrad = create("upgrad")
    rows = [
        "| K | Gramian | before / after, UPGrad's weights | max ‖Δ(Jᵀvᵢ)‖/‖gᵢ‖ | profile after "
        "(self CPU) |",
        "|---|---|---|---|---|",
    ]
    for k in ks:
        for rank in (k, max(2, round(0.3 * k))):
            jac = gradients(k, rank)
            gram = jac @ jac.T

            def timed(
                qp: Callable[..., object], gram: torch.Tensor = gram
            ) -> Callable[[int], object]:
                def run(_: int) -> object:
                    with solver(qp):
                        return upgrad.weights_from_gramian(gram)

                return run

            medians = interleaved_medians(
                {"before": timed(before), "after": timed(after)}, rounds, clock
            )
            directions = {}
            for name, qp in (("before", before), ("after", after)):
                with solver(qp):
                    directions[name] = dual_cone_weights(gram, torch.eye(k, dtype=gram.dtype)) @ jac
            diff = (directions["after"] - directions["before"]).norm(dim=-1) / jac.norm(dim=-1)
            profile_after = _breakdown(
                partial(upgrad.weights_from_gramian, gram), max(3, PROFILE_WORK // k**2)
            )
            label = "full rank" if rank == k else f"rank {rank + 1}"
            rows.append(
                f"| {k} | {label} | {medians['before'] / medians['after']:.2f}× | "
                f"{diff.max():.1e} | {profile_after} |"
            )
    return rows


def measure_step(k: int, batch: int, rounds: int, clock: Callable[[], float]) -> list[str]:
    """UPGrad's whole training step on the seed CNN at K tasks, before / after."""
    before = solver_before()
    steps = {name: _stepper("cnn", k, "upgrad (Gramian)", batch) for name in ("before", "after")}

    def run_before(_: int) -> None:
        with solver(before):
            steps["before"]()

    medians = interleaved_medians(
        {"before": run_before, "after": lambda _: steps["after"]()}, rounds, clock
    )
    return [
        "",
        f"UPGrad's training step, seed CNN, K = {k}, batch {batch}: before / after "
        f"{medians['before'] / medians['after']:.2f}× (median of {rounds} interleaved steps each; "
        f"load average at the end {load_average()})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="10,40,100")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--step-k", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--step-rounds", type=int, default=2)
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    rows = measure_weights([int(k) for k in args.ks.split(",")], args.rounds, clock)
    rows += measure_step(args.step_k, args.batch, args.step_rounds, clock)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
