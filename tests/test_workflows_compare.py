"""mtlkit compare: the grid, the choice on validation, the statistics, and resuming."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest
import yaml

from mtlkit.cli.main import main
from mtlkit.config import ConfigError, parse_config
from mtlkit.evaluation import compare_values, delta_m, mean_ci
from mtlkit.training import DivergedError
from mtlkit.workflows import cells as cells_module
from mtlkit.workflows.cells import CELLS, Cell, config_fingerprint
from mtlkit.workflows.compare import compare_methods, tuning_grid
from mtlkit.workflows.comparison import DIVERGED_ROW

pytestmark = pytest.mark.usefixtures("one_torch_thread", "offline_data")

GRID = {"methods": ["ew", "mgda-ub"], "seeds": 2, "tune": {"optim.lr": [0.3, 0.01]}}
CELL_COUNT = (2 + 2) * 2 * 2  # (methods + single-task tasks) × seeds × values
SMALL_GRID = {"methods": ["ew", "mgda-ub"], "seeds": 2}
SMALL_COUNT = (2 + 2) * 2


class _Crash(Exception):
    pass


class _CrashingProbe:
    def due(self, step: int) -> bool:
        return True

    def record(self, view) -> None:
        raise _Crash


@pytest.fixture
def finished_trainings(monkeypatch):
    """The fingerprints of the cells trained to the end; ``crash_at[0] = n`` makes the n-th
    training (0-based) crash in its first step, leaving an unfinished cell folder."""
    finished: list[str] = []
    crash_at = [None]
    real_train = cells_module.train

    def train(config, path, probes=(), **options):
        if crash_at[0] == len(finished):
            crash_at[0] = None
            return real_train(config, path, [_CrashingProbe()], **options)
        result = real_train(config, path, probes, **options)
        finished.append(config_fingerprint(config))
        return result

    monkeypatch.setattr(cells_module, "train", train)
    return finished, crash_at


@pytest.mark.slow
def test_an_interrupted_compare_resumes_and_trains_nothing_twice(
    tmp_path, finished_trainings, tiny_config
):
    finished, crash_at = finished_trainings
    config = parse_config(tiny_config())
    crash_at[0] = 3
    with pytest.raises(_Crash):
        compare_methods(config, tmp_path / "cmp", **SMALL_GRID)
    assert len(finished) == 3
    unfinished = [
        p for p in (tmp_path / "cmp" / CELLS).iterdir() if not (p / "metrics.json").exists()
    ]
    assert len(unfinished) == 1 and (unfinished[0] / "config.yaml").is_file()

    result = compare_methods(config, tmp_path / "cmp", **SMALL_GRID)
    assert len(finished) == SMALL_COUNT == len(set(finished))  # every cell trained to the end once
    assert result.trained == SMALL_COUNT - 3
    assert sorted(p.name for p in (tmp_path / "cmp" / CELLS).iterdir()) == sorted(
        p.name for p in (tmp_path / "cmp" / CELLS).iterdir() if (p / "metrics.json").exists()
    )
    again = compare_methods(config, tmp_path / "cmp", **SMALL_GRID)
    assert again.trained == 0 and len(finished) == SMALL_COUNT
    assert again.rows == result.rows


@pytest.mark.slow
def test_single_task_baselines_are_shared_across_methods(tmp_path, finished_trainings, tiny_config):
    finished, _ = finished_trainings
    config = parse_config(tiny_config())
    compare_methods(config, tmp_path / "cmp", ["ew"], seeds=1)
    assert len(finished) == 3  # ew, single-left, single-right
    compare_methods(config, tmp_path / "cmp", ["ew", "pcgrad"], seeds=1)
    assert len(finished) == 4  # only pcgrad is new
    names = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "cmp" / CELLS).iterdir())
    assert names == ["ew-seed0", "pcgrad-seed0", "single-left-seed0", "single-right-seed0"]


@pytest.mark.slow
def test_the_table_is_the_cells_statistics_and_test_metrics_never_choose(
    tmp_path,
    finished_trainings,
    tiny_config,
):
    finished, _ = finished_trainings
    result = compare_methods(parse_config(tiny_config()), tmp_path / "cmp", **GRID)
    _table_numbers_are_the_cells_statistics(result, tmp_path)
    _poisoned_test_metrics_change_no_choice(result, tmp_path, finished, tiny_config)


def _table_numbers_are_the_cells_statistics(result, tmp_path) -> None:
    cells = _cells(tmp_path / "cmp")
    tasks = ["left", "right"]

    def runs(method: str, lr: float) -> list[Cell]:
        found = [
            c
            for c in cells
            if c.config.tasks.include is None
            and c.config.balancer.name == method
            and c.config.optim.lr == lr
        ]
        return sorted(found, key=lambda c: c.config.seed)

    def single(task: str) -> list[Cell]:
        chosen = float(result.baselines[task].chosen.split("=")[1])
        found = [
            c for c in cells if c.config.tasks.include == [task] and c.config.optim.lr == chosen
        ]
        return sorted(found, key=lambda c: c.config.seed)

    for row in result.rows:
        lr = float(row.chosen.split("=")[1])
        chosen_runs = runs(row.method, lr)
        assert len(chosen_runs) == 2
        for task in tasks:
            assert row.test[task] == mean_ci([c.test_metric(task) for c in chosen_runs])
        per_seed = [
            delta_m(
                compare_values(
                    {t: run.test_metric(t) for t in tasks},
                    {t: single(t)[i].test_metric(t) for t in tasks},
                    {t: True for t in tasks},
                )
            )
            for i, run in enumerate(chosen_runs)
        ]
        assert row.delta_m == mean_ci(per_seed)
        val = {
            f"optim.lr={v}": sum(c.val_score for c in runs(row.method, v)) / 2 for v in (0.3, 0.01)
        }
        assert row.val_scores == pytest.approx(val)
        assert row.val_scores[row.chosen] == max(val.values())
    assert sorted(r.mean_rank for r in result.rows) in ([1.0, 2.0], [1.5, 1.5])
    assert next(r for r in result.rows if r.method == "ew").step_time == 1.0

    with (tmp_path / "cmp" / "compare.csv").open() as file:
        table = list(csv.DictReader(file))
    assert [line["method"] for line in table] == ["ew", "mgda-ub", "single-task"]
    assert float(table[1]["delta_m_percent_mean"]) == pytest.approx(result.rows[1].delta_m.mean)
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "positive = multi-task better (Maninis et al. 2019)" in report
    assert "95 % CI" in report and "Student's t" in report
    assert (tmp_path / "cmp" / "report.html").read_text().count("<img") == 1
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["seeds"] == [0, 1]


def _poisoned_test_metrics_change_no_choice(before, tmp_path, finished, tiny_config) -> None:
    """Poison every run's test metrics so that the unchosen values look far better on test:
    the resumed compare shows the poisoned test numbers and still makes the same choice."""
    config = parse_config(tiny_config())
    chosen = {row.method: row.chosen for row in before.rows}
    chosen.update({f"single-{t}": row.chosen for t, row in before.baselines.items()})
    for path in (tmp_path / "cmp" / CELLS).iterdir():
        metrics = json.loads((path / "metrics.json").read_text())
        saved = yaml.safe_load((path / "config.yaml").read_text())
        include = saved["tasks"]["include"]
        key = f"single-{include[0]}" if include else saved["balancer"]["name"]
        poison = 0.01 if chosen[key] == f"optim.lr={saved['optim']['lr']}" else 1.0
        for task in metrics["test"]:
            metrics["test"][task]["accuracy"] = poison
        (path / "metrics.json").write_text(json.dumps(metrics))

    after = compare_methods(config, tmp_path / "cmp", **GRID)
    assert len(finished) == CELL_COUNT  # nothing retrained
    assert {row.method: row.chosen for row in after.rows} == {
        row.method: row.chosen for row in before.rows
    }
    assert {t: r.chosen for t, r in after.baselines.items()} == {
        t: r.chosen for t, r in before.baselines.items()
    }
    assert all(row.test[t].mean == 0.01 for row in after.rows for t in ("left", "right"))


def test_grid_errors_are_one_line_before_any_work(tmp_path, tiny_config):
    config = parse_config(tiny_config())
    with pytest.raises(ConfigError, match="--tune seed: cannot be tuned"):
        compare_methods(config, tmp_path / "a", ["ew"], tune={"seed": [1, 2]})
    with pytest.raises(ConfigError, match="optim.lr"):
        compare_methods(config, tmp_path / "b", ["ew"], tune={"optim.lr": [0.1, -1.0]})
    with pytest.raises(ConfigError, match="balancer"):
        compare_methods(config, tmp_path / "c", ["ew", "no-such-method"])
    with pytest.raises(ConfigError, match="distinct"):
        compare_methods(config, tmp_path / "d", ["ew", "ew"])
    with pytest.raises(ConfigError, match="--seeds"):
        compare_methods(config, tmp_path / "e", ["ew"], seeds=0)
    no_validation = parse_config(tiny_config(data={"val_fraction": 0.0}))
    with pytest.raises(ConfigError, match="data.val_fraction"):
        compare_methods(no_validation, tmp_path / "f", ["ew"])
    assert not any((tmp_path / name).exists() for name in "abcdef")
    assert tuning_grid({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert tuning_grid(None) == [{}]


def _cells(root) -> list[Cell]:
    found = []
    for path in (root / CELLS).iterdir():
        config = parse_config(yaml.safe_load((path / "config.yaml").read_text()))
        metrics = json.loads((path / "metrics.json").read_text())
        found.append(Cell(path, config, metrics, trained=False))
    return found


@pytest.mark.slow
def test_a_diverged_run_finishes_its_cell_and_is_never_chosen(
    tmp_path, finished_trainings, tiny_config
):
    finished, _ = finished_trainings
    config = parse_config(tiny_config())
    grid = {"seeds": 1, "tune": {"optim.lr": [1e30, 0.05]}}
    result = compare_methods(config, tmp_path / "cmp", ["ew"], **grid)
    assert [row.chosen for row in result.rows] == ["optim.lr=0.05"]
    assert {row.chosen for row in result.baselines.values()} == {"optim.lr=0.05"}
    marked = sorted(
        p.name.rsplit("-", 1)[0]
        for p in (tmp_path / "cmp" / CELLS).iterdir()
        if (p / "diverged.json").is_file()
    )
    assert marked == ["ew-seed0", "single-left-seed0", "single-right-seed0"]
    assert result.rows[0].val_scores["optim.lr=1e+30"] == -math.inf
    assert compare_methods(config, tmp_path / "cmp", ["ew"], **grid).trained == 0
    with pytest.raises(
        DivergedError, match=r"single-task baseline of left diverged at every tuned value \("
    ):
        compare_methods(config, tmp_path / "cmp", ["ew"], seeds=1, tune={"optim.lr": [1e30]})


@pytest.mark.slow
def test_a_method_diverging_at_every_value_gets_a_row_and_exit_1(
    tmp_path, monkeypatch, capsys, tiny_config
):
    """Its cells diverge (the training of mgda-ub raises what a non-finite loss raises); the
    baselines and ew are compared, the row of mgda-ub says it diverged, and compare exits 1."""
    real_train = cells_module.train

    def train(config, path, probes=(), **options):
        if config.balancer.name == "mgda-ub":
            raise DivergedError("non-finite loss at step 1")
        return real_train(config, path, probes)

    monkeypatch.setattr(cells_module, "train", train)
    out, config_file = tmp_path / "cmp", tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config()))
    argv = ["compare", str(config_file), "--methods", "ew,mgda-ub", "--seeds", "1"]
    assert main([*argv, "--tune", "optim.lr=0.05,0.01", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "mgda-ub diverged at every tuned value (mgda-ub-seed0-" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    rows = {row["method"]: row for row in csv.DictReader((out / "compare.csv").open())}
    assert rows["mgda-ub"]["chosen"] == DIVERGED_ROW and rows["mgda-ub"]["mean_rank"] == ""
    assert rows["ew"]["chosen"].startswith("optim.lr=") and float(rows["ew"]["mean_rank"]) == 1
    summary = json.loads((out / "compare.json").read_text())
    assert [row["method"] for row in summary["rows"]] == ["ew"]
    assert list(summary["diverged"]) == ["mgda-ub"]
    assert re.search(rf"\| mgda-ub +\| {DIVERGED_ROW} +\|", (out / "report.md").read_text())
