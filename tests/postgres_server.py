"""A throwaway PostgreSQL server for tests: Debian's ``postgresql`` binaries, a fresh cluster in
a temporary folder, trust authentication on a free loopback port, removed afterwards.

Run as root, the server runs as the ``postgres`` user (PostgreSQL refuses root)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

USER = "mtlkit"


def server_binaries() -> str | None:
    """The folder of ``initdb`` and ``pg_ctl`` (the newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def postgres_server(binaries: str) -> Iterator[str]:
    """Start a server with the binaries in ``binaries``; yield its URL; stop and remove it."""
    root = tempfile.mkdtemp(prefix="mtlkit-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(root, "data"), _free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, cwd=root)

    run(f"{binaries}/initdb", "-D", data, "-A", "trust", "-U", USER)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(f"{binaries}/pg_ctl", "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start")
    try:
        yield f"postgresql://{USER}@127.0.0.1:{port}/postgres"
    finally:
        run(f"{binaries}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
