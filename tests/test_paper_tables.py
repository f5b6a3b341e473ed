"""``benchmarks/paper_tables.py`` on a tiny limit, so that it cannot rot: a part tunes its rows
and the ledger (``benchmarks/ledger.py``) logs its line, a rerun continues without training
anything again, a stopped part's line says so and keeps the rows it finished, the table marks the
rows not finished, and a folder refuses a protocol other than the one it was started with."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from mtlkit.workflows import cells as cells_module

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
TINY = ["--epochs", "1", "--lrs", "0.1,0.01", "--seeds", "2", "--workers", "1"]
"""One epoch, two learning rates, two seeds, in this process (the fake data is patched in)."""

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread", "offline_data")]


@pytest.fixture
def paper_tables(monkeypatch):
    """The benchmark script as a module (its folder on the path, as when it runs)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import paper_tables

    return paper_tables


@pytest.fixture
def trained(monkeypatch):
    """The run folders trained from now on (the cells' ``train``, counted)."""
    folders = []
    real_train = cells_module.train

    def train(config, path, **options):
        folders.append(Path(path).name)
        return real_train(config, path, **options)

    monkeypatch.setattr(cells_module, "train", train)
    return folders


def _rows(results):
    """The tables' lines by their first cell."""
    return {line.split(" | ")[0].strip("| "): line for line in results.splitlines() if "|" in line}


def _cells(line):
    """A markdown table line's cells."""
    return [cell.strip() for cell in line.strip("|").split("|")]


def _parts(out):
    return [json.loads(line) for line in (out / "parts.jsonl").read_text().splitlines()]


def test_a_part_logs_its_rows_and_a_rerun_trains_nothing(tmp_path, paper_tables, trained):
    out = tmp_path / "tables"
    assert paper_tables.main([*TINY, "--methods", "cagrad,ew", "--out", str(out)]) == 0
    (part,) = _parts(out)
    notes = part["notes"]
    assert notes["table"] == "sener" and notes["workers"] == 1
    assert notes["methods"] == ["ew", "cagrad"]  # the table's order, not the command's
    assert part["status"] == "finished" and part["cells_finished"] == ["ew", "cagrad"]
    assert list(notes["rows"]) == ["ew", "cagrad"]
    assert part["end"] >= part["start"] and part["wall_seconds"] > 0
    assert part["machine"]["cores"] >= 1 and len(part["load_start"]) == len(part["load_end"]) == 3
    assert part["command"][:2] == ["python", "benchmarks/paper_tables.py"]
    assert part["command"][2:] == [*TINY, "--methods", "cagrad,ew", "--out", str(out)]
    assert all(notes["rows"][row]["wall_s"] > 0 for row in ("ew", "cagrad"))
    cagrad = notes["rows"]["cagrad"]
    assert set(cagrad["val_scores"]) == {"cagrad(c=0.2)", "cagrad(c=0.5)"}
    best = max(cagrad["val_scores"], key=cagrad["val_scores"].get)
    assert paper_tables.method_label(cagrad["balancer"]) == best
    # 2 learning rates per study, 1 epoch each: single-task ×2, ew, cagrad's two c; then the
    # winners' second seed (the first seed's run is the chosen trial's)
    assert len(trained) == 2 * (2 + 1 + 2) + (2 + 1 + 1)
    assert cagrad["search_trial_epochs"] == 4 and notes["rows"]["ew"]["search_trial_epochs"] == 2

    results = (out / "sener" / "results.md").read_text()
    rows = _rows(results)
    for row in ("single-task", "ew", "cagrad"):
        assert "not finished" not in rows[row]
    for row in ("mgda-ub", "upgrad", "nash-mtl", "famo"):
        assert "not finished" in rows[row]
    assert "97.23" in rows["single-task"] and "96.46" in rows["ew"] and "97.26" in rows["mgda-ub"]

    trained.clear()
    assert paper_tables.main([*TINY, "--methods", "ew,cagrad", "--out", str(out)]) == 0
    assert trained == []  # every study and cell was finished: nothing is trained again
    first, again = _parts(out)
    assert again["status"] == "finished"
    assert again["notes"]["rows"]["cagrad"]["balancer"] == cagrad["balancer"]
    results_again = (out / "sener" / "results.md").read_text()
    assert results_again.split("\n\n")[0] == results.split("\n\n")[0]
    parts = [_cells(line) for line in results_again.splitlines() if "`python " in line]
    assert [cells[0] for cells in parts] == ["ew, cagrad"] * 2
    assert [cells[-2:] for cells in parts] == [["ew, cagrad", "finished"]] * 2


def test_a_stopped_part_says_so_and_keeps_the_rows_it_finished(tmp_path, paper_tables, monkeypatch):
    """SIGTERM (here sent as the second row starts) ends the part ``interrupted``; the rows it
    finished before are in its line, and the table has them."""
    real_tune_row = paper_tables.tune_row

    def tune_row(protocol, out, row, sweep):
        if row == "mgda-ub":
            os.kill(os.getpid(), signal.SIGTERM)
        return real_tune_row(protocol, out, row, sweep)

    monkeypatch.setattr(paper_tables, "tune_row", tune_row)
    out = tmp_path / "tables"
    with pytest.raises(SystemExit):
        paper_tables.main([*TINY, "--methods", "ew,mgda-ub", "--out", str(out)])
    (part,) = _parts(out)
    assert part["status"] == "interrupted: SystemExit: 143"
    assert part["cells_finished"] == ["ew"] and list(part["notes"]["rows"]) == ["ew"]
    assert paper_tables.main([*TINY, "--methods", "ew", "--out", str(out), "--report"]) == 0
    results = (out / "sener" / "results.md").read_text()
    rows = _rows(results)
    assert "not finished" not in rows["ew"] and "not finished" in rows["mgda-ub"]
    assert _cells(rows["ew, mgda-ub"])[-2:] == ["ew", "interrupted: SystemExit: 143"]


def test_a_folder_refuses_another_protocol_and_unknown_rows(tmp_path, paper_tables, capsys):
    out = tmp_path / "tables"
    assert paper_tables.main([*TINY, "--methods", "ew", "--out", str(out), "--report"]) == 0
    assert not (out / "parts.jsonl").exists()  # --report runs nothing
    rows = _rows((out / "sener" / "results.md").read_text())
    assert all("not finished" in rows[row] for row in ("single-task", "ew", "cagrad"))
    assert "97.23" in rows["single-task"]
    changed = [*TINY, "--epochs", "2", "--methods", "ew", "--out", str(out)]
    assert paper_tables.main(changed) == 2
    error = capsys.readouterr().err
    assert "another protocol" in error and "config.train.epochs" in error
    assert paper_tables.main([*TINY, "--methods", "ew,pcgrad", "--out", str(out)]) == 2
    assert "pcgrad" in capsys.readouterr().err
    assert not (out / "parts.jsonl").exists()


def test_table_2_is_fashion_mnist_in_a_folder_beside_table_1_with_no_paper_figures(
    tmp_path, paper_tables
):
    """The rows train as table 1's do (the same code, tested above); here what differs: its
    experiment, its own folder and results under a shared ``--out``, no published figures."""
    out = tmp_path / "tables"
    assert paper_tables.main([*TINY, "--methods", "ew", "--out", str(out), "--report"]) == 0
    table_2 = [*TINY, "--table", "fashion-mnist", "--out", str(out), "--report"]
    assert paper_tables.main(table_2) == 0
    protocol = json.loads((out / "fashion-mnist" / "protocol.json").read_text())
    assert protocol["config"]["data"]["benchmark"] == "multi-fashion-mnist"
    assert protocol["config"]["data"]["protocol"] == "pareto-published"
    assert protocol["variants"] == json.loads((out / "sener" / "protocol.json").read_text())[
        "variants"
    ]
    rows = _rows((out / "fashion-mnist" / "results.md").read_text())
    for row in ("single-task", "ew", "cagrad"):
        assert "not finished" in rows[row]
        assert _cells(rows[row])[7:10] == ["—", "—", "—"]  # no paper figures, none to hold
    assert "97.23" in _rows((out / "sener" / "results.md").read_text())["single-task"]
