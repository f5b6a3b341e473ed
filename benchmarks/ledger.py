"""The record of a long benchmark run made in parts, on whatever machine each part ran.

Every invocation is a *part*. When it ends, ``<out>/parts.jsonl`` gets one line: its start and
end (UTC), wall and CPU seconds, the machine (CPU model, cores, torch threads), the code (the
commit of the checkout mtlkit was imported from, and whether it had uncommitted changes), the
load average at its start and end and its mean over the part, the seconds it spent stopped
(SIGSTOP, e.g. a pause for someone else's timing), the cells it finished and how it ended.
Every cell folder it worked on gets ``part-<id>.json``: the same figures for the time spent on
that cell, so a cell trained over several parts, or on several machines, says so.

A part killed outright (SIGKILL, a lost machine) cannot write its line: a heartbeat thread
rewrites ``<out>/parts/<id>.json`` and the current cell's ``part-<id>.json`` every ``interval``
seconds, and the next invocation on the same folder appends the dead part's last heartbeat to
``parts.jsonl``, ended ``killed``.

A caller adds what else its parts should say with :meth:`PartLedger.note` (e.g. what a part was
asked to run, what it found); the line and every heartbeat carry it under ``notes``, so a killed
part keeps what it had noted.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from timing import cpu_model, machine

import mtlkit
from mtlkit.atomic import write_text_atomic

PARTS = "parts.jsonl"
"""The file, in the run folder, that holds one line per part."""
HEARTBEATS = "parts"
"""The sub-folder of the run folder where running parts keep their heartbeat."""
PAUSE_FACTOR = 1.5
"""A heartbeat later than this many intervals counts the excess as time the process was
stopped (a stopped process's threads do not run; a merely busy machine delays a wake-up by far
less than half an interval)."""


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def cpu_seconds_so_far() -> float:
    """CPU seconds of this process and of its child processes that have ended (a part whose
    trainings run in worker processes counts each worker once it has exited and been joined)."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


@dataclass
class Usage:
    """What a part spent, on the whole or on one cell: wall and CPU seconds, seconds stopped,
    and the load average (1 minute) sampled at every heartbeat."""

    start: str = field(default_factory=utc_now)
    end: str | None = None
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    paused_seconds: float = 0.0
    load_samples: list[float] = field(default_factory=list)
    _wall0: float = field(default_factory=time.perf_counter, repr=False)
    _cpu0: float = field(default_factory=cpu_seconds_so_far, repr=False)

    def update(self) -> None:
        """Bring the end time and the wall and CPU seconds up to now."""
        self.end = utc_now()
        self.wall_seconds = time.perf_counter() - self._wall0
        self.cpu_seconds = cpu_seconds_so_far() - self._cpu0

    def record(self) -> dict:
        """The figures as a JSON-ready mapping (the load as its mean, with the sample count)."""
        samples = self.load_samples
        return {
            "start": self.start,
            "end": self.end,
            "wall_seconds": round(self.wall_seconds, 1),
            "cpu_seconds": round(self.cpu_seconds, 1),
            "paused_seconds": round(self.paused_seconds, 1),
            "load_mean": round(sum(samples) / len(samples), 2) if samples else None,
            "load_samples": len(samples),
        }


def machine_record() -> dict:
    """The machine a part runs on: host, CPU model, cores, torch threads and version, and
    :func:`timing.machine`'s line."""
    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "line": machine(),
    }


def code_record() -> dict | None:
    """The code a part runs: the commit of the git checkout that ``mtlkit`` was imported from
    and whether its tracked files had uncommitted changes; ``None`` outside a git checkout."""
    folder = Path(mtlkit.__file__).resolve().parent

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "-uno")),
        }
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_key(record: dict) -> str:
    """What makes two parts' timings comparable: CPU model, cores and threads."""
    return f"{record['cpu']}, {record['cores']} cores, {record['threads']} threads"


class PartLedger:
    """Records one part of a run in ``out`` (use as a context manager; wrap the work on each
    cell in :meth:`cell`, report it with :meth:`finished`, add other facts with :meth:`note`).

    ``command`` is the command line recorded (default: ``sys.argv``; give it when the part is
    run by a call rather than from the command line)."""

    def __init__(
        self, out: Path, interval: float = 30.0, command: Sequence[str] | None = None
    ) -> None:
        self.out = Path(out)
        self.interval = interval
        self.command = list(sys.argv if command is None else command)
        self.id = f"{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}-{os.getpid()}"
        self.machine = machine_record()
        self.code = code_record()
        self.usage = Usage()
        self.load_start = os.getloadavg()
        self.cells_finished: list[str] = []
        self.notes: dict[str, Any] = {}
        self._cell: tuple[Path, Usage] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="part-heartbeat")

    @property
    def heartbeat_path(self) -> Path:
        """This part's heartbeat file."""
        return self.out / HEARTBEATS / f"{self.id}.json"

    def __enter__(self) -> PartLedger:
        (self.out / HEARTBEATS).mkdir(parents=True, exist_ok=True)
        close_dead_parts(self.out)
        self._write_heartbeat()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: object, _: object) -> None:
        self._stop.set()
        self._thread.join()
        status = "finished" if kind is None else f"interrupted: {kind.__name__}: {error}"
        with self._lock:
            self.usage.update()
            line = self._line(status)
        with (self.out / PARTS).open("a") as ledger:
            ledger.write(json.dumps(line) + "\n")
        self.heartbeat_path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def cell(self, folder: Path) -> Iterator[None]:
        """Count the time inside the block to the cell in ``folder`` (its ``part-<id>.json``)."""
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._cell = (folder, Usage())
            self._write_cell()  # a part killed before its first heartbeat still shows here
        try:
            yield
        finally:
            with self._lock:
                self._write_cell()
                self._cell = None

    def finished(self, name: str) -> None:
        """Note that this part finished the cell ``name``."""
        with self._lock:
            self.cells_finished.append(name)
            self._write_heartbeat()

    def note(self, **fields: Any) -> None:
        """Add (or replace) ``fields`` in the part's ``notes`` (inside the ``with`` block: at
        once in its heartbeat too).

        Raises:
            TypeError: a value that is not JSON (a string, number, bool, None, list or dict of
                these); nothing is noted then.
        """
        copy = json.loads(json.dumps(fields))  # checked, and kept as it is now
        with self._lock:
            self.notes.update(copy)
            if self._thread.is_alive():  # not after the end: a heartbeat left would read killed
                self._write_heartbeat()

    def _beat(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            paused = now - last - self.interval if now - last > PAUSE_FACTOR * self.interval else 0
            last = now
            load = os.getloadavg()[0]
            with self._lock:
                usages = [self.usage] + ([self._cell[1]] if self._cell else [])
                for usage in usages:
                    usage.paused_seconds += paused
                    usage.load_samples.append(load)
                self._write_heartbeat()
                if self._cell is not None:
                    self._write_cell()

    def _write_cell(self) -> None:
        folder, usage = self._cell
        usage.update()
        record = {"part": self.id, "machine": self.machine, **usage.record()}
        write_text_atomic(folder / f"part-{self.id}.json", json.dumps(record, indent=2))

    def _write_heartbeat(self) -> None:
        self.usage.update()
        write_text_atomic(self.heartbeat_path, json.dumps(self._line("running")))

    def _line(self, status: str) -> dict:
        return {
            "part": self.id,
            "pid": os.getpid(),
            "command": self.command,
            "machine": self.machine,
            "code": self.code,
            **self.usage.record(),
            "load_start": [round(x, 2) for x in self.load_start],
            "load_end": [round(x, 2) for x in os.getloadavg()],
            "cells_finished": list(self.cells_finished),
            "status": status,
            "notes": dict(self.notes),
        }


def close_dead_parts(out: Path) -> None:
    """Append to ``parts.jsonl`` every part of ``out`` whose heartbeat is left but whose process
    is gone (on this host), ended ``killed`` at its last heartbeat; parts still running, or
    running on another host, are left alone."""
    for path in sorted((out / HEARTBEATS).glob("*.json")):
        line = json.loads(path.read_text())
        if line["machine"]["host"] != platform.node() or _alive(line["pid"]):
            continue
        line["status"] = f"killed (its last heartbeat: {line['end']})"
        with (out / PARTS).open("a") as ledger:
            ledger.write(json.dumps(line) + "\n")
        path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_parts(out: Path) -> list[dict]:
    """The parts recorded in ``out``, in the order they ended."""
    path = Path(out) / PARTS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def running_parts(out: Path) -> list[dict]:
    """The parts of ``out`` that have not ended (or were killed and not yet recorded): their
    last heartbeat, ``end`` being its time."""
    return [
        json.loads(path.read_text()) for path in sorted((Path(out) / HEARTBEATS).glob("*.json"))
    ]


def cell_parts(folder: Path) -> list[dict]:
    """Every part's record of the time it spent on the cell in ``folder``, by start."""
    records = [json.loads(path.read_text()) for path in folder.glob("part-*.json")]
    return sorted(records, key=lambda record: (record["start"], record["part"]))
