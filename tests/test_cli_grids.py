"""mtlkit compare, pareto and affinity on the command line: outputs, resuming, one-line errors."""

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


def test_compare_prints_the_table_and_resumes(config_file, tmp_path, offline_data, capsys):
    out = tmp_path / "cmp"
    arguments = ["compare", str(config_file), *TINY, "--out", str(out), "--seeds", "2"]
    assert main([*arguments, "--methods", "ew,fixed:weights=[1,2]", "--tune", "optim.lr=0.2,0.05"]) == 0
    printed = capsys.readouterr().out
    assert "| fixed(weights=[1, 2]) |" in printed and "| single-task " in printed
    assert "positive = multi-task better" in printed and "(runs trained now: 16)" in printed
    assert main([*arguments, "--methods", "ew,fixed:weights=[1,2]", "--tune", "optim.lr=0.2,0.05"]) == 0
    assert "(runs trained now: 0)" in capsys.readouterr().out


def test_pareto_sweeps_the_tradeoff_and_writes_the_front(config_file, tmp_path, offline_data, capsys):
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
