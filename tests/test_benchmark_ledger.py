"""The parts record of long benchmark runs (``benchmarks/ledger.py``): each invocation leaves one
line in ``parts.jsonl`` and one record per cell it worked on, however it ended, even killed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from ledger import (  # noqa: E402
    HEARTBEATS,
    PartLedger,
    cell_parts,
    code_record,
    read_parts,
    running_parts,
)


def test_a_part_records_its_time_machine_and_finished_cells(tmp_path):
    with PartLedger(tmp_path, interval=0.01, command=["bench.py", "--x", "1"]) as ledger:
        ledger.note(asked=["one", "two"])
        with ledger.cell(tmp_path / "one"):
            sum(range(10**5))
        ledger.finished("one")
        ledger.note(found={"one": 1.5})
        with ledger.cell(tmp_path / "two"):
            pass
    (line,) = read_parts(tmp_path)
    assert line["part"] == ledger.id and line["pid"] == os.getpid()
    assert line["status"] == "finished" and line["cells_finished"] == ["one"]
    assert line["command"] == ["bench.py", "--x", "1"]
    assert line["notes"] == {"asked": ["one", "two"], "found": {"one": 1.5}}
    assert line["start"] <= line["end"] and line["wall_seconds"] >= 0
    assert line["machine"]["cores"] == os.cpu_count() and line["machine"]["cpu"]
    assert line["code"] == code_record()  # the checkout's commit (None outside a git checkout)
    assert len(line["load_start"]) == len(line["load_end"]) == 3
    assert not list((tmp_path / HEARTBEATS).iterdir())  # the heartbeat is gone
    for cell in ("one", "two"):
        (record,) = cell_parts(tmp_path / cell)
        assert record["part"] == ledger.id and record["machine"] == line["machine"]
        assert 0 <= record["wall_seconds"] <= line["wall_seconds"]


def test_a_note_that_is_not_json_is_refused_and_changes_nothing(tmp_path):
    with PartLedger(tmp_path) as ledger:
        ledger.note(kept=1)
        with pytest.raises(TypeError, match="not JSON serializable"):
            ledger.note(other=2, bad={1, 2})
        assert ledger.notes == {"kept": 1}
        (heartbeat,) = running_parts(tmp_path)
        assert heartbeat["notes"] == {"kept": 1}
    assert read_parts(tmp_path)[0]["notes"] == {"kept": 1}
    assert running_parts(tmp_path) == []


def test_an_error_ends_the_part_interrupted_and_the_next_part_adds_a_line(tmp_path):
    with pytest.raises(KeyboardInterrupt), PartLedger(tmp_path) as ledger:
        with ledger.cell(tmp_path / "cell"):
            raise KeyboardInterrupt
    with PartLedger(tmp_path) as second, second.cell(tmp_path / "cell"):
        pass
    first, last = read_parts(tmp_path)
    assert first["status"] == "interrupted: KeyboardInterrupt: " and first["part"] == ledger.id
    assert last["status"] == "finished" and last["part"] == second.id
    assert [r["part"] for r in cell_parts(tmp_path / "cell")] == [ledger.id, second.id]


def test_a_killed_part_is_recorded_by_the_next_one(tmp_path):
    """A part killed by SIGKILL writes nothing at its end; its heartbeat, with the cell it was
    on, is what the next part on the folder appends, ended ``killed``."""
    child = (
        "import os, signal, sys; from pathlib import Path; from ledger import PartLedger\n"
        "with PartLedger(Path(sys.argv[1])) as ledger, ledger.cell(Path(sys.argv[1]) / 'cell'):\n"
        "    ledger.finished('before')\n"
        "    ledger.note(row={'wall': 1.0})\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS)}
    killed = subprocess.Popen([sys.executable, "-c", child, str(tmp_path)], env=env)
    assert killed.wait() == -9
    assert read_parts(tmp_path) == []  # the killed part wrote no line
    (heartbeat,) = running_parts(tmp_path)  # but left its heartbeat
    assert heartbeat["pid"] == killed.pid and heartbeat["status"] == "running"
    with PartLedger(tmp_path) as ledger:
        pass
    dead, alive = read_parts(tmp_path)
    assert dead["pid"] == killed.pid
    assert dead["status"].startswith("killed") and dead["cells_finished"] == ["before"]
    assert dead["notes"] == {"row": {"wall": 1.0}}  # what it noted before it was killed
    assert alive["part"] == ledger.id and alive["status"] == "finished"
    (record,) = cell_parts(tmp_path / "cell")  # written as the killed part entered the cell
    assert record["part"] == dead["part"]


def test_the_code_record_is_the_commit_of_mtlkits_checkout_and_its_changes():
    """In a git checkout: the commit ``git rev-parse HEAD`` gives where mtlkit's package lives,
    dirty exactly when a tracked file differs from it."""
    import mtlkit

    folder = Path(mtlkit.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        assert code_record() is None
        return
    changed = subprocess.run(
        ["git", "status", "--porcelain", "-uno"], cwd=folder, capture_output=True, text=True
    ).stdout.strip()
    assert code_record() == {"commit": head, "dirty": bool(changed)}


def test_a_part_counts_the_cpu_of_its_finished_child_processes(tmp_path):
    """Work done in a worker process that has ended counts in the part's CPU seconds."""
    burn = (
        "import time\n"
        "start = time.process_time()\n"
        "while time.process_time() - start < 0.3: pass\n"
        "print(time.process_time())"
    )
    with PartLedger(tmp_path, interval=60.0, command=["bench.py"]):
        child = subprocess.run(
            [sys.executable, "-c", burn], capture_output=True, text=True, check=True
        )
    (line,) = read_parts(tmp_path)
    # The child's own CPU clock (its start-up included) is a lower bound of what it cost; the
    # line is rounded to 0.1 s.
    assert line["cpu_seconds"] >= float(child.stdout) - 0.05
