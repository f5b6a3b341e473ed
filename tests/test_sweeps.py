"""The sweep engine: Optuna studies under compare, pareto and tune; workers, exactly-once cells,
takeover of a killed worker's trial from its checkpoint, pruning, and the search space."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import optuna
import pytest
from optuna.trial import TrialState

from mtlkit.config import ConfigError, parse_config
from mtlkit.workflows import cells as cells_module
from mtlkit.workflows import worker_start
from mtlkit.workflows.cells import CELLS
from mtlkit.workflows.compare import combo_label, compare_methods
from mtlkit.workflows.pareto import pareto_sweep
from mtlkit.workflows.sweeps import JOURNAL, SweepOptions, open_storage
from mtlkit.workflows.tune import tune_methods
from mtlkit.workflows.tune_space import Param, parse_param
from processes import CRASHED  # noqa: F401 - imports torch._dynamo once, before forking

pytestmark = pytest.mark.usefixtures("one_torch_thread", "offline_data")


def _cell_metrics(folder):
    """Per cell folder name, its test metrics and selected validation score."""
    found = {}
    for cell in sorted((folder / CELLS).iterdir()):
        metrics = json.loads((cell / "metrics.json").read_text())
        found[cell.name] = (metrics["test"], metrics["best_val_score"])
    return found


def _table(folder, name="compare"):
    """The summary's rows without the step-time ratio (a timing, not a result)."""
    rows = json.loads((folder / f"{name}.json").read_text())["rows"]
    return [{key: value for key, value in row.items() if key != "step_time"} for row in rows]


def _complete_trials_per_cell(folder, storage=None):
    storage = open_storage(folder, storage)
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    cells = [t.params["cell"] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    return {index: cells.count(index) for index in set(cells)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("optim.lr=loguniform:1e-3:1e-1", Param("optim.lr", "loguniform", 1e-3, 1e-1)),
        ("optim.weight_decay=uniform:0:0.1", Param("optim.weight_decay", "uniform", 0.0, 0.1)),
        ("train.batch_size=int:8:32", Param("train.batch_size", "int", 8.0, 32.0)),
        ("optim.lr=0.1,0.01", Param("optim.lr", "list", values=(0.1, 0.01))),
        (
            "schedule.name=cosine,constant",
            Param("schedule.name", "list", values=("cosine", "constant")),
        ),
    ],
)
def test_a_param_is_parsed_into_its_space(text, expected):
    assert parse_param(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "optim.lr",
        "=0.1",
        "optim.lr=log:1:2",
        "optim.lr=uniform:2:1",
        "optim.lr=int:1.5:3",
        "optim.lr=loguniform:-1:1",
        "optim.lr=uniform:1",
    ],
)
def test_bad_param_syntax_is_refused_in_one_line(text):
    with pytest.raises(ConfigError, match="--param") as raised:
        parse_param(text)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("param", "value", "boundary"),
    [
        (Param("k", "loguniform", 1e-4, 1.0), 1.2e-4, True),  # 0.02 of the log range from low
        (Param("k", "loguniform", 1e-4, 1.0), 1e-2, False),
        (Param("k", "uniform", 0.0, 1.0), 0.97, True),
        (Param("k", "int", 1, 100), 50, False),
        (Param("k", "list", values=(0.1, 0.03, 0.01)), 0.01, True),
        (Param("k", "list", values=(0.1, 0.03, 0.01)), 0.03, False),
    ],
)
def test_a_value_at_the_end_of_its_range_is_on_the_boundary(param, value, boundary):
    assert param.on_boundary(value) is boundary


def test_threads_per_trial_split_the_cores_and_the_users_setting_wins(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert SweepOptions(workers=2).threads_per_trial() == 4
    assert SweepOptions(workers=16).threads_per_trial() == 1
    assert SweepOptions(workers=1).threads_per_trial() is None  # the process as it is
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert SweepOptions(workers=2).threads_per_trial() == 3


@pytest.mark.slow
def test_a_grid_is_one_study_whose_trials_are_its_cells(tmp_path, tiny_config):
    config = parse_config(tiny_config())
    result = compare_methods(config, tmp_path / "cmp", ["ew"], seeds=1)
    assert (tmp_path / "cmp" / JOURNAL).is_file()
    assert result.counts.complete == 3 and result.counts.failed == result.counts.pruned == 0
    assert _complete_trials_per_cell(tmp_path / "cmp") == {0: 1, 1: 1, 2: 1}
    again = compare_methods(config, tmp_path / "cmp", ["ew"], seeds=1)
    assert again.trained == 0 and again.counts.complete == 3  # no new trial


def _compare_worker(folder, raw, options):
    compare_methods(parse_config(raw), folder, ["ew", "mgda-ub"], seeds=2, sweep=options)


@pytest.mark.slow
def test_two_workers_run_every_cell_once_with_one_workers_numbers(
    tmp_path, tiny_config, monkeypatch
):
    monkeypatch.setattr(worker_start, "START_METHOD", "fork")  # the children inherit the fake data
    raw = tiny_config()
    _compare_worker(tmp_path / "one", raw, SweepOptions(threads=1))
    _compare_worker(tmp_path / "two", raw, SweepOptions(workers=2, threads=1))
    assert _complete_trials_per_cell(tmp_path / "two") == {i: 1 for i in range((2 + 2) * 2)}
    assert _cell_metrics(tmp_path / "two") == _cell_metrics(tmp_path / "one")
    assert _table(tmp_path / "two") == _table(tmp_path / "one")


@pytest.mark.slow
def test_two_commands_on_one_storage_share_the_grid(tmp_path, tiny_config, monkeypatch):
    """Two processes running the same command each finish with the whole table, and together
    train every cell once (one journal, as two machines on a shared filesystem would)."""
    monkeypatch.setattr(worker_start, "START_METHOD", "fork")
    raw = tiny_config()
    context = multiprocessing.get_context("fork")
    options = SweepOptions(threads=1)
    commands = [
        context.Process(target=_compare_worker, args=(tmp_path / "grid", raw, options))
        for _ in range(2)
    ]
    for command in commands:
        command.start()
    for command in commands:
        command.join(120)
    assert [command.exitcode for command in commands] == [0, 0]
    assert _complete_trials_per_cell(tmp_path / "grid") == {i: 1 for i in range((2 + 2) * 2)}


class _SlowSteps:
    """A probe that sleeps at every step (the run's numbers do not change): a worker is then
    surely mid-trial when the test kills it."""

    def due(self, step: int) -> bool:
        return True

    def record(self, view) -> None:
        time.sleep(0.05)


def _slow_compare(folder, raw, options):
    real_train = cells_module.train
    cells_module.train = lambda config, path, **kw: real_train(config, path, [_SlowSteps()], **kw)
    _compare_worker(folder, raw, options)


@pytest.mark.slow
def test_a_killed_workers_cell_is_taken_over_from_its_checkpoint(
    tmp_path, tiny_config, monkeypatch
):
    raw = tiny_config(train={"epochs": 2, "checkpoint_every": 1})
    options = SweepOptions(threads=1, heartbeat=0.2, stale_after=1.0)
    _compare_worker(tmp_path / "whole", raw, options)

    folder = tmp_path / "killed"
    worker = multiprocessing.get_context("fork").Process(
        target=_slow_compare, args=(folder, raw, options)
    )
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once a cell has a checkpoint but no result
        cells = list((folder / CELLS).glob("*")) if (folder / CELLS).is_dir() else []
        if any((c / "last.pt").is_file() and not (c / "metrics.json").exists() for c in cells):
            break
        time.sleep(0.01)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join()

    resumed = []
    real_train = cells_module.train

    def train(config, path, **options):
        resumed.append(options["resume"])
        return real_train(config, path, **options)

    monkeypatch.setattr(cells_module, "train", train)
    _compare_worker(folder, raw, options)
    assert resumed.count(True) == 1  # the killed trial's retry continued its checkpoint
    assert _cell_metrics(folder) == _cell_metrics(tmp_path / "whole")
    assert _table(folder) == _table(tmp_path / "whole")
    counts = json.loads((folder / "compare.json").read_text())["trials"]
    assert counts["failed"] == 1 and counts["complete"] == (2 + 2) * 2


def _shown_without_step_time(table):
    """A comparison table's header and rows as shown, without the step-time column (a timing)."""
    return [list(table.header[:-1]), *(list(row[:-1]) for row in table.rows)]


@pytest.mark.slow
def test_tune_over_a_grid_of_lists_equals_compare_tune(tmp_path, tiny_config):
    """At one seed, ``tune`` over lists and ``compare --tune`` on the same values are the same
    computation: every value's validation score, every choice and the whole table agree."""
    config = parse_config(tiny_config())
    compare = compare_methods(
        config, tmp_path / "cmp", ["ew", "mgda-ub"], seeds=1, tune={"optim.lr": [0.3, 0.01]}
    )
    result = tune_methods(
        config,
        tmp_path / "tune",
        ["ew", "mgda-ub"],
        [parse_param("optim.lr=0.3,0.01")],
        seeds=1,
        pruner="none",
    )
    storage = open_storage(tmp_path / "tune", None)
    compared = {
        **{f"single-task {task}": row for task, row in compare.baselines.items()},
        **{row.method: row for row in compare.rows},
    }
    assert sorted(study.subject for study in result.studies) == sorted(compared)
    for study in result.studies:  # each search point is compare's cell at that value
        trials = optuna.load_study(study_name=study.study, storage=storage).get_trials(
            states=(TrialState.COMPLETE,)
        )
        scores = {combo_label(trial.params): trial.value for trial in trials}
        assert scores == compared[study.subject].val_scores, study.subject
        assert study.chosen_label == compared[study.subject].chosen, study.subject
    tuned = result.comparison
    assert _shown_without_step_time(tuned.table) == _shown_without_step_time(compare.table)
    for mine, theirs in zip(tuned.rows, compare.rows, strict=True):  # exact, not as printed
        assert (mine.method, mine.chosen, mine.test, mine.delta_m, mine.mean_rank) == (
            theirs.method,
            theirs.chosen,
            theirs.test,
            theirs.delta_m,
            theirs.mean_rank,
        )
    assert {t: (b.chosen, b.test) for t, b in tuned.baselines.items()} == {
        t: (b.chosen, b.test) for t, b in compare.baselines.items()
    }
    assert (tmp_path / "tune" / "tune.csv").is_file() and (tmp_path / "tune" / JOURNAL).is_file()


@pytest.mark.slow
def test_a_pruned_trial_never_enters_the_results(tmp_path, tiny_config, monkeypatch):
    # The median pruner stops every trial at optim.lr=0.3 after its first epoch.
    monkeypatch.setattr(
        optuna.pruners.MedianPruner,
        "prune",
        lambda self, study, trial: trial.params["optim.lr"] == 0.3,
    )
    config = parse_config(tiny_config(train={"epochs": 2}))
    result = tune_methods(
        config, tmp_path / "tune", ["ew"], [parse_param("optim.lr=0.3,0.01,0.003")], seeds=2
    )
    for study in result.studies:
        assert study.counts.pruned == 1 and study.counts.complete == 2
        assert study.chosen["optim.lr"] != 0.3
        assert study.counts.trial_epochs == 1 + 2 * 2 and study.full_epochs == 3 * 2
    assert all(row.chosen != "optim.lr=0.3" for row in result.comparison.rows)
    trial_cells = [c for c in (tmp_path / "tune" / CELLS).iterdir() if "-trial-" in c.name]
    unfinished = [c for c in trial_cells if not (c / "metrics.json").exists()]
    assert len(unfinished) == 3  # one pruned trial per study, never finished, never read
    summary = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert [study["counts"]["pruned"] for study in summary["studies"]] == [1, 1, 1]
    assert "trial-epochs run / full" in (tmp_path / "tune" / "report.md").read_text()


@pytest.mark.slow
def test_pareto_runs_on_the_engine(tmp_path, tiny_config):
    config = parse_config(tiny_config())
    result = pareto_sweep(config, tmp_path / "front", points=2)
    assert (tmp_path / "front" / JOURNAL).is_file() and result.trained == 4
    assert _complete_trials_per_cell(tmp_path / "front") == {i: 1 for i in range(4)}


@pytest.mark.slow
def test_two_workers_on_a_postgresql_study_run_every_cell_once(
    tmp_path, tiny_config, monkeypatch, postgres_url
):
    monkeypatch.setattr(worker_start, "START_METHOD", "fork")
    raw = tiny_config()
    _compare_worker(tmp_path / "journal", raw, SweepOptions(threads=1))
    options = SweepOptions(storage=postgres_url, workers=2, threads=1)
    _compare_worker(tmp_path / "db", raw, options)
    assert not (tmp_path / "db" / JOURNAL).exists()
    assert _complete_trials_per_cell(tmp_path / "db", postgres_url) == {
        i: 1 for i in range((2 + 2) * 2)
    }
    assert _cell_metrics(tmp_path / "db") == _cell_metrics(tmp_path / "journal")
    assert _table(tmp_path / "db") == _table(tmp_path / "journal")


@pytest.mark.slow
def test_tune_on_two_workers_runs_each_grid_point_once_and_agrees(
    tmp_path, tiny_config, monkeypatch
):
    monkeypatch.setattr(worker_start, "START_METHOD", "fork")
    config = parse_config(tiny_config())
    space = [parse_param("optim.lr=0.3,0.03,0.003")]
    results = {
        workers: tune_methods(
            config,
            tmp_path / f"w{workers}",
            ["ew"],
            space,
            seeds=2,
            pruner="none",
            sweep=SweepOptions(workers=workers, threads=1),
        )
        for workers in (1, 2)
    }
    for study in results[2].studies:
        assert (study.counts.complete, study.counts.failed) == (3, 0)
    assert [s.chosen for s in results[2].studies] == [s.chosen for s in results[1].studies]
    assert _table(tmp_path / "w2", "tune") == _table(tmp_path / "w1", "tune")
