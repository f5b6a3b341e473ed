"""The command line, end to end on tiny offline data."""

from __future__ import annotations

import json

import pytest
import yaml

from mtlkit.cli.main import main
from mtlkit.evaluation import hypervolume, pareto_front

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = [
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=16",
    "--set",
    "model.backbone=mlp",
    "--set",
    "data.val_fraction=0.2",
    "--set",
    "train.progress=false",
]


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "data": {"benchmark": "multi-mnist"}}))
    return path


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochz=3", "train.epochz"),
        ("optim.lr=-1", "optim.lr"),
        ("balancer.name=x", "balancer"),
    ],
)
def test_config_errors_exit_2_naming_the_key(config_file, capsys, override, key):
    assert main(["train", str(config_file), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mtlkit: config error: {key}")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_writes_a_complete_run_folder_and_eval_reproduces_it(
    config_file, tmp_path, offline_data, capsys
):
    out = tmp_path / "run"
    assert main(["train", str(config_file), *TINY, "--out", str(out)]) == 0
    for name in ("config.yaml", "log.csv", "best.pt", "last.pt", "metrics.json", "report.md"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"left", "right"} and len(metrics["history"]) == 1
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"] == 1
    capsys.readouterr()
    assert main(["eval", str(out), "--device", "cpu"]) == 0
    again = json.loads(capsys.readouterr().out)
    for task, report in metrics["test"].items():
        assert again[task]["accuracy"] == report["accuracy"]


@pytest.mark.slow
def test_a_finished_run_is_not_overwritten_by_accident(config_file, tmp_path, offline_data, capsys):
    out = tmp_path / "run"
    assert main(["train", str(config_file), *TINY, "--out", str(out)]) == 0
    before = (out / "metrics.json").read_bytes()
    assert main(["train", str(config_file), *TINY, "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before
    assert main(["train", str(config_file), *TINY, "--out", str(out), "--overwrite"]) == 0


@pytest.mark.slow
def test_overwrite_removes_the_previous_runs_files_first(config_file, tmp_path, offline_data):
    out = tmp_path / "run"
    assert main(["train", str(config_file), *TINY, "--out", str(out)]) == 0
    stale = out / "tb" / "events.out.tfevents.stale"
    stale.write_text("old")
    keep = out / "notes.txt"  # not ours: never touched
    keep.write_text("mine")
    assert main(["train", str(config_file), *TINY, "--out", str(out), "--overwrite"]) == 0
    assert not stale.exists() and keep.read_text() == "mine"


@pytest.mark.slow
def test_a_finished_comparison_is_not_overwritten_by_accident(
    config_file, tmp_path, offline_data, capsys
):
    out = tmp_path / "cmp"
    assert main(["baselines", str(config_file), *TINY, "--workers", "1", "--out", str(out)]) == 0
    before = (out / "comparison.json").read_bytes()
    assert main(["baselines", str(config_file), *TINY, "--workers", "1", "--out", str(out)]) == 1
    assert "comparison.json" in capsys.readouterr().err
    assert (out / "comparison.json").read_bytes() == before


@pytest.mark.slow
def test_baselines_compares_against_one_single_task_run_per_task(
    config_file, tmp_path, offline_data, capsys
):
    out = tmp_path / "cmp"
    assert main(["baselines", str(config_file), *TINY, "--workers", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Δm%" in printed and "left" in printed and "right" in printed
    summary = json.loads((out / "comparison.json").read_text())
    assert [row["task"] for row in summary["rows"]] == ["left", "right"]
    single = yaml.safe_load((out / "single-left" / "config.yaml").read_text())
    assert single["tasks"]["include"] == ["left"] and single["balancer"] == {"name": "ew"}
    assert (out / "report.md").is_file()


def test_methods_lists_every_registered_method(capsys):
    from mtlkit.balancing import available

    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in lines if line and not line.startswith(" ")]
    assert listed == [info.name for info in available()]


def test_eval_of_a_folder_that_is_no_run_exits_2(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_data_list_shows_datasets_and_benchmarks(tmp_path, capsys):
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "mnist: not present" in printed and "fashion-mnist" in printed
    assert "multi-fashion-mnist:" in printed


def test_fetching_an_unknown_dataset_exits_1_with_the_known_names(tmp_path, capsys):
    assert main(["data", "fetch", "nope", "--data-dir", str(tmp_path)]) == 1
    assert "Known datasets: fashion-mnist, mnist" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_compare_prints_the_table_and_resumes(config_file, tmp_path, offline_data, capsys):
    out = tmp_path / "cmp"
    arguments = ["compare", str(config_file), *TINY, "--out", str(out), "--seeds", "1"]
    grid = ["--methods", "ew,fixed:weights=[1,2]", "--tune", "optim.lr=0.2"]
    assert main([*arguments, *grid]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| fixed(weights=[1, 2])"))
    assert row.split("|")[2].strip() == "optim.lr=0.2" and "| single-task " in printed
    assert "positive = multi-task better" in printed and "(runs trained now: 4)" in printed
    assert main([*arguments, *grid]) == 0
    assert "(runs trained now: 0)" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_pareto_sweeps_the_tradeoff_and_writes_the_front(
    config_file, tmp_path, offline_data, capsys
):
    out = tmp_path / "front"
    assert main(["pareto", str(config_file), *TINY, "--points", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "pareto.json").read_text())
    points = summary["points"]
    assert [p["preference"] for p in points] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    losses = [[p["losses"]["left"], p["losses"]["right"]] for p in points]
    assert summary["reference"] == [2.0, 2.0]
    assert summary["hypervolume"] == pytest.approx(hypervolume(losses, (2, 2)))
    front = pareto_front(losses)
    assert [p["on_loss_front"] for p in points] == [i in front for i in range(3)]
    errors = [[-p["metrics"]["left"], -p["metrics"]["right"]] for p in points]
    assert [p["on_metric_front"] for p in points] == [i in pareto_front(errors) for i in range(3)]
    assert set(summary["single_task"]) == {"left", "right"}
    assert (out / "report.html").read_text().count("<img") == 2
    assert "hypervolume (test losses, reference 2, 2)" in capsys.readouterr().out
    assert main(["pareto", str(config_file), *TINY, "--points", "3", "--out", str(out)]) == 0
    assert "(runs trained now: 0)" in capsys.readouterr().out


@pytest.mark.slow
def test_tune_prints_each_search_and_the_table(config_file, tmp_path, offline_data, capsys):
    out = tmp_path / "tune"
    arguments = ["tune", str(config_file), *TINY, "--out", str(out), "--seeds", "2"]
    search = ["--methods", "ew", "--param", "optim.lr=0.2,0.02", "--pruner", "none"]
    assert main([*arguments, *search]) == 0
    printed = capsys.readouterr().out
    searches = [line for line in printed.splitlines() if line.startswith("[tune] ")]
    assert [line.split(":")[0] for line in searches] == [
        "[tune] single-task left",
        "[tune] single-task right",
        "[tune] ew",
    ]
    assert all("trials 2 complete, 0 pruned, 0 failed" in line for line in searches)
    assert all("on the boundary: optim.lr" in line for line in searches)  # a 2-value list
    assert "| ew " in printed and "| single-task " in printed
    assert (out / "tune.csv").is_file() and (out / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_affinity_writes_the_matrices_and_refuses_to_overwrite(
    config_file, tmp_path, offline_data, capsys
):
    out = tmp_path / "aff"
    arguments = ["affinity", str(config_file), *TINY, "--every", "1", "--out", str(out)]
    assert main(arguments) == 0
    summary = json.loads((out / "affinity.json").read_text())
    assert summary["tasks"] == ["left", "right"] and len(summary["affinity"]) == 2
    assert summary["steps"] == list(range(1, len(summary["steps"]) + 1))
    assert (out / "run" / "metrics.json").is_file() and (out / "report.html").is_file()
    assert "suggested grouping:" in capsys.readouterr().out
    assert main(arguments) == 1
    assert "already holds an affinity measurement" in capsys.readouterr().err
    assert main([*arguments, "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["compare", "--methods", "ew", "--tune", "optim.lr"], "--tune 'optim.lr': write it as"),
        (["compare", "--methods", "ew", "--tune", "seed=1,2"], "--tune seed: cannot be tuned"),
        (["compare", "--methods", "ew,cagrad:c"], "--methods 'ew,cagrad:c': write methods"),
        (["compare", "--methods", "ew,nope"], "balancer"),
        (["compare", "--methods", "ew", "--confidence", "1.5"], "--confidence"),
        (["pareto", "--methods", "mgda"], "mgda takes no preference vector"),
        (["pareto", "--methods", "stch"], "warm-up epochs cover all"),
        (["pareto", "--reference", "2,x"], "--reference '2,x'"),
        (["pareto", "--reference", "2,2,2"], "one value per task"),
        (["pareto", "--points", "1"], "--points"),
        (["affinity", "--every", "0"], "--every"),
        (["compare", "--methods", "ew", "--workers", "0"], "--workers: give 1 or more"),
        (["tune", "--methods", "ew", "--param", "optim.lr"], "--param 'optim.lr': write it as"),
        (["tune", "--methods", "ew", "--param", "optim.lr=logu:1:2"], "unknown range 'logu'"),
        (["tune", "--methods", "ew", "--param", "optim.lr=uniform:1:x"], "give two numbers"),
        (["tune", "--methods", "ew", "--param", "optim.lr=loguniform:0:1"], "LOW > 0"),
        (["tune", "--methods", "ew", "--param", "optim.lrr=0.1,0.2"], "optim.lrr: unknown key"),
        (["tune", "--methods", "ew", "--param", "optim.lr=uniform:0.1:1"], "--trials: give"),
        (["tune", "--methods", "ew"], "--param: give one or more"),
        (["affinity", "--set", "tasks.include=[left]"], "affinity needs 2 or more tasks"),
    ],
)
def test_grid_usage_errors_exit_2_in_one_line(config_file, tmp_path, capsys, arguments, message):
    command, *options = arguments
    out = tmp_path / "out"
    assert main([command, str(config_file), *TINY, *options, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_diverged_sweep_exits_1_and_keeps_its_runs(config_file, tmp_path, offline_data, capsys):
    out = tmp_path / "front"
    arguments = ["pareto", str(config_file), *TINY, "--points", "2", "--out", str(out)]
    assert main([*arguments, "--set", "optim.lr=1e30"]) == 1
    assert "diverged" in capsys.readouterr().err
    assert len(list((out / "cells").glob("*/diverged.json"))) == 4  # 2 single-task + 2 sweep runs
