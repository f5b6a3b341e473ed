"""How worker processes start (the grid commands' ``--workers`` and ``baselines``' workers)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver

__all__ = ["START_METHOD", "WORKER_PRELOAD", "start_worker_server", "worker_context"]

START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
"""How worker processes start: both are safe with torch's threads (a worker never inherits a
process that has computed). ``forkserver`` (POSIX) forks each worker from a server that has
imported the training code once (:data:`WORKER_PRELOAD`), where ``spawn`` would import it
again in every worker (about 4 s of CPU each)."""
WORKER_PRELOAD = (
    "mtlkit.workflows.train",
    "mtlkit.workflows.parallel_runs",  # baselines' workers
    "mtlkit.workflows.sweeps",  # the grid commands' workers
    "torch._dynamo",  # torch.optim's first optimizer imports it: about 1 s
)
"""The modules the fork server imports before it forks the first worker."""


def worker_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context worker processes start from (:data:`START_METHOD`)."""
    context = multiprocessing.get_context(START_METHOD)
    if START_METHOD == "forkserver":
        context.set_forkserver_preload(list(WORKER_PRELOAD))
    return context


def start_worker_server() -> None:
    """Start the fork server now (with ``forkserver``), so that it imports the training code
    while this process goes on (e.g. fetches the data) rather than when the first worker is
    asked for."""
    if START_METHOD == "forkserver":
        worker_context()  # gives the server its preload before it starts
        multiprocessing.forkserver.ensure_running()
