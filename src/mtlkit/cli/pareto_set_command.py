"""``mtlkit pareto RUN_DIR``: the front of a preference-conditioned run, printed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def print_set_front(args: argparse.Namespace, reference: Sequence[float] | None) -> int:
    """Evaluate the run ``args.config`` (a run folder) on ``args.rays`` test rays and print
    its hypervolume and where the report went."""
    from mtlkit.workflows.pareto_set import pareto_set_front

    result = pareto_set_front(
        args.config,
        args.out,
        rays=args.rays,
        reference=reference,
        sweep=args.sweep,
    )
    reference_text = ", ".join(f"{value:g}" for value in result.reference)
    print(
        f"hypervolume ({len(result.points)} test rays, test losses, reference "
        f"{reference_text}): {result.hypervolume:.4f}"
    )
    print(f"report: {result.out_dir / 'report.md'}")
    return 0
