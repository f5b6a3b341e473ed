"""Run test code in child processes: alone, or as a torchrun-like group on loopback.

The children are forked from the test process, so they start in milliseconds with torch already
imported and inherit the test's fakes (no pickling); each runs on one thread. A group gets
torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``) and, as under torchrun, the rendezvous store is held by the
launcher (this process), so it outlives every member, and the others are killed when one fails.
A child that raises prints its traceback and exits with 99.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

import torch._dynamo  # noqa: F401 - the first optimizer imports it (seconds): once, before forking
from torch.distributed import TCPStore

CRASHED = 99
"""The exit code of a child whose target raised."""


def _child(target: Callable[..., int | None], rank: int, env: dict[str, str], args: tuple) -> None:
    import torch

    os.environ.update(env)
    torch.set_num_threads(1)
    try:
        code = target(rank, *args)
    except BaseException:  # noqa: BLE001 - reported to the test through the exit code
        traceback.print_exc()
        os._exit(CRASHED)
    os._exit(0 if code is None else int(code))


def run_group(
    target: Callable[..., int | None],
    world_size: int,
    *args: Any,
    timeout: float = 120.0,
    grace: float = 15.0,
) -> list[int]:
    """Run ``target(rank, *args)`` in ``world_size`` forked processes; their exit codes
    (``-signal`` for a process killed by a signal). ``world_size`` 1: no torchrun variables.
    Once one process has failed, the others get ``grace`` seconds to end before they are killed."""
    context = multiprocessing.get_context("fork")
    store = None
    if world_size > 1:  # the agent's store, as torchrun holds it (port chosen by the system)
        store = TCPStore("127.0.0.1", 0, world_size, is_master=True, wait_for_workers=False)
    processes = []
    for rank in range(world_size):
        env = {}
        if world_size > 1:
            env = {
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(world_size),
                "LOCAL_WORLD_SIZE": str(world_size),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(store.port),
                "TORCHELASTIC_USE_AGENT_STORE": "True",
            }
        process = context.Process(target=_child, args=(target, rank, env, args))
        process.start()
        processes.append(process)
    deadline = time.monotonic() + timeout
    running = list(processes)
    while running:
        wait([p.sentinel for p in running], timeout=max(0.0, deadline - time.monotonic()))
        if time.monotonic() > deadline:
            break
        finished = [p for p in running if not p.is_alive()]
        running = [p for p in running if p.is_alive()]
        if any(p.exitcode != 0 for p in finished):
            # As torchrun's agent does, end the group once one process failed, but give the
            # others a grace period first: after a stop signal they are finishing on their own
            # (a process whose peer was killed waits in a collective and is ended here).
            deadline = min(deadline, time.monotonic() + grace)
            while running and time.monotonic() < deadline:
                wait([p.sentinel for p in running], timeout=deadline - time.monotonic())
                running = [p for p in running if p.is_alive()]
            break
    for process in processes:
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
        process.join()
    del store
    return [process.exitcode for process in processes]
