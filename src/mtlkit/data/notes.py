"""One-line progress notes for the user, on standard error."""

from __future__ import annotations

import sys


def note(message: str, *, quiet: bool) -> None:
    """Print ``message`` as one ``mtlkit:`` line on standard error unless ``quiet``."""
    if not quiet:
        print(f"mtlkit: {message}", file=sys.stderr, flush=True)
