"""Independent trainings run at once, each in its own worker process (``baselines --workers``).

Each job is a name and a call (a module-level function and its arguments, so that it can be
sent to a process started by :data:`~mtlkit.workflows.worker_start.START_METHOD`).
At most ``workers`` processes run at once, each on ``threads`` intra-op threads, so a job's
numbers are those it would have in the parent at that thread count. A job's standard output is
left as it is (a training's epoch lines name their run already); its standard error goes out
line by line behind ``[<name>]`` and is no terminal, so that no progress bar is drawn (several on
one terminal are not readable). The first job to fail stops the others (each saves a checkpoint
on SIGTERM, as a training stopped by hand does) and its error is raised in the parent with the
job named.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, TextIO

from mtlkit.training import TrainingInterrupted
from mtlkit.workflows import worker_start


@dataclass(frozen=True)
class Job:
    """One training to run in a worker process: ``target(*args)``, known as ``name``.

    ``nice`` (0 or more) is added to the worker's niceness, where the platform has one (the
    system caps it, at 19 on Linux): a job that may yield the cores to a longer one shares them
    at a lower priority.

    Raises:
        ValueError: a negative ``nice`` (raising a priority takes privileges a worker lacks).
    """

    name: str
    target: Callable[..., Any]
    args: tuple[Any, ...]
    nice: int = 0

    def __post_init__(self) -> None:
        if self.nice < 0:
            raise ValueError(f"job {self.name}: nice must be 0 or more, got {self.nice}.")


class PrefixedLines(io.TextIOBase):
    """A text stream writing each whole line to ``stream`` behind ``prefix``, in one write (so
    that lines of processes sharing a terminal or a pipe do not interleave), and never a tty."""

    def __init__(self, stream: TextIO, prefix: str) -> None:
        super().__init__()
        self.stream = stream
        self.prefix = prefix
        self._partial = ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.stream.write(f"{self.prefix}{line}\n")
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.write("\n")
        self.stream.flush()


def run_jobs(jobs: Sequence[Job], workers: int, threads: int | None) -> dict[str, Any]:
    """Run ``jobs`` in at most ``workers`` processes at once, each on ``threads`` intra-op
    threads (None: torch's default in a fresh process), and return each job's result by name.

    Raises:
        BaseException: the first job's error that failed, of its own kind (so the command's exit
            code is the one that error has in one process), its message led by the job's name;
            a process that ended without a result (killed) raises :class:`ChildProcessError`.
    """
    context = worker_start.worker_context()
    waiting = list(jobs)
    running: dict[str, tuple[Any, Connection]] = {}
    results: dict[str, Any] = {}
    failure: BaseException | None = None
    with _stopping_children(running):
        while running or (waiting and failure is None):
            while waiting and failure is None and len(running) < workers:
                job = waiting.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(
                    target=_worker, args=(job, threads, sender), name=f"mtlkit-{job.name}"
                )
                process.start()
                sender.close()
                running[job.name] = (process, receiver)
            done = _next_finished(running)
            process, receiver = running.pop(done)
            outcome = _outcome(done, process, receiver)
            if not isinstance(outcome, BaseException):
                results[done] = outcome
            elif failure is None:
                failure = outcome
                for other, _ in running.values():  # they checkpoint and stop
                    _signal(other, signal.SIGTERM)
    if failure is not None:
        raise failure
    return results


def _next_finished(running: dict[str, tuple[Any, Connection]]) -> str:
    """The name of a running job whose result came, or whose process ended."""
    by_handle: dict[Any, str] = {}
    for name, (process, receiver) in running.items():
        by_handle[receiver] = name
        by_handle[process.sentinel] = name
    return by_handle[wait(list(by_handle))[0]]


def _outcome(name: str, process: Any, receiver: Connection) -> Any:
    """A finished job's result, or its error named (the process is joined)."""
    message: tuple[bool, Any, str] | None = None
    with contextlib.suppress(EOFError, OSError):
        if receiver.poll():
            message = receiver.recv()
    receiver.close()
    process.join()
    if message is None:
        return ChildProcessError(  # an OSError: the command says it in one line, exit code 1
            f"{name}: its worker process ended without a result (exit code {process.exitcode}"
            f"{', killed by a signal' if (process.exitcode or 0) < 0 else ''}); run the command "
            "again with --resume to finish (finished runs are kept, interrupted ones continue "
            "from their last checkpoint)."
        )
    ok, value, trace = message
    return value if ok else _named(value, name, trace)


def _named(error: BaseException, name: str, trace: str) -> BaseException:
    """``error`` of the same kind with ``name`` leading its message (the worker's traceback as
    a note)."""
    message = f"{name}: {error}"
    named: BaseException
    if isinstance(error, TrainingInterrupted):
        named = TrainingInterrupted(message, error.signum)
    else:
        try:
            named = type(error)(message)
        except Exception:  # an error type that takes other arguments
            named = RuntimeError(f"{name}: {type(error).__name__}: {error}")
    named.add_note(f"in the worker process of {name}:\n{trace}")
    return named


def _worker(job: Job, threads: int | None, sender: Connection) -> None:
    """A worker process: its thread count and named output first, then the job; sends
    ``(True, result, "")`` or ``(False, error, traceback)``."""
    import torch

    signal.signal(signal.SIGINT, signal.default_int_handler)  # not the parent's (fork)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if threads is not None:
        torch.set_num_threads(threads)
    if job.nice and hasattr(os, "nice"):
        os.nice(job.nice)
    sys.stderr = PrefixedLines(sys.stderr, f"[{job.name}] ")
    try:
        message: tuple[bool, Any, str] = (True, job.target(*job.args), "")
    except BaseException as error:  # sent to the parent, which raises it
        message = (False, error, traceback.format_exc())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    try:
        pickle.loads(pickle.dumps(message[1]))
    except Exception as unsent:  # an error or result that cannot be pickled and read back
        message = (False, RuntimeError(f"{message[1]!r} (not sent: {unsent})"), message[2])
    sender.send(message)
    sender.close()


@contextlib.contextmanager
def _stopping_children(running: dict[str, tuple[Any, Connection]]) -> Iterator[None]:
    """While the block runs, SIGTERM to this process is passed on to the running workers (they
    checkpoint and stop; their errors then end the block), and SIGINT is left to them (a
    terminal's Ctrl-C reaches every process of its group; one signal each, since a second
    Ctrl-C stops a training at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: Any) -> None:
        for process, _ in list(running.values()):
            _signal(process, signum)

    def leave_to_them(signum: int, frame: Any) -> None:
        """Nothing: not SIG_IGN, which the workers would inherit."""

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
        signal.SIGINT: signal.signal(signal.SIGINT, leave_to_them),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _signal(process: Any, signum: int) -> None:
    """Send ``signum`` to ``process`` if it still runs."""
    if process.pid is not None and process.exitcode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)
