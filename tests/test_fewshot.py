"""Few-shot transfer: paired, nested, reproducible draws; one row per trunk and count; the
confidence interval of the draws' scores; what is refused."""

from __future__ import annotations

import json
import re

import pytest
import torch

from mtlkit.cli.main import main
from mtlkit.config import ConfigError, parse_config
from mtlkit.data import Split
from mtlkit.evaluation.stats import mean_ci
from mtlkit.workflows import train
from mtlkit.workflows.fewshot import _draws, fewshot, trunk_runs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_TRUNK = {"model": {"backbone_options": {"hidden": [16, 8]}}, "tasks": {"include": ["left"]}}
"""The tiny config (``tiny_config``) with a two-stage trunk, trained on ``left`` only."""


@pytest.fixture
def roomier_data(monkeypatch, tmp_path, make_fake_dataset):
    """Fake MNIST with 300 training images (every class of ``right`` has a few)."""
    from mtlkit.data import load_benchmark
    from mtlkit.workflows import build

    folder = tmp_path / "data"
    specs = {"mnist": make_fake_dataset(folder, "mnist", train=300, test=40, seed=3)}
    fakes = {"data_dir": folder, "specs": specs, "system_root": tmp_path / "none", "quiet": True}
    monkeypatch.setattr(
        build,
        "load_benchmark",
        lambda name, **options: load_benchmark(name, **{**options, **fakes}),
    )


@pytest.fixture
def trained(tmp_path, roomier_data, tiny_config):
    return train(parse_config(tiny_config(SMALL_TRUNK)), tmp_path / "source").run_dir


def test_draws_are_per_class_and_reproducible():
    labels = torch.arange(60) % 3
    split = Split(torch.zeros(60, 2), {"t": labels})
    draws = _draws(split, "t", 3, 5, 4, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(draws, _draws(split, "t", 3, 5, 4, seed=7)))
    for order in draws:
        per_class = order.view(3, 5)
        assert (labels[per_class] == torch.arange(3).view(3, 1)).all()  # class c's rows
        assert len(set(order.tolist())) == 15
    assert not torch.equal(draws[0], draws[1])


def test_draws_leave_out_unlabelled_rows_and_refuse_too_many_shots():
    labels = torch.arange(20) % 2
    mask = torch.arange(20) < 10
    split = Split(torch.zeros(20, 2), {"t": labels}, {"t": mask})
    for order in _draws(split, "t", 2, 5, 3, seed=0):
        assert (order < 10).all()
    with pytest.raises(ConfigError, match="--shots 6: class 0 of task 't' has only 5"):
        _draws(split, "t", 2, 6, 1, seed=0)


@pytest.mark.slow
def test_a_held_out_task_gives_one_row_per_trunk_and_count_reproducibly(trained):
    result = fewshot(trained, "right", shots=(1, 2), draws=3, steps=5)
    assert [(r.trunk, r.shots) for r in result.rows] == [
        ("source", 1),
        ("source", 2),
        ("random init", 1),
        ("random init", 2),
    ]
    for row in result.rows:
        assert len(row.scores) == 3 and all(0.0 <= s <= 1.0 for s in row.scores)
        assert row.summary == mean_ci(row.scores)
    again = fewshot(trained, "right", shots=(1, 2), draws=3, steps=5)
    assert again.rows == result.rows
    assert "2-shot accuracy" in result.table().splitlines()[0]


@pytest.mark.slow
def test_tuning_the_last_stage_leaves_the_run_untouched(trained):
    before = (trained / "best.pt").read_bytes()
    result = fewshot(
        trained, "right", shots=(1,), draws=2, steps=3, tune="last", random_trunk=False
    )
    assert [r.trunk for r in result.rows] == ["source"]
    assert (trained / "best.pt").read_bytes() == before


def test_a_baselines_folder_compares_its_multi_task_and_single_task_trunks(tmp_path):
    for name in ("multi-task", "single-left", "single-right"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("name: x\n")
    assert list(trunk_runs(tmp_path)) == ["multi-task", "single-left", "single-right"]


@pytest.mark.slow
def test_the_cli_prints_the_table_and_writes_every_draw(trained, tmp_path, capsys):
    out = tmp_path / "few.json"
    args = ["fewshot", str(trained), "--task", "right", "--shots", "1", "--draws", "2"]
    assert main([*args, "--steps", "2", "--no-random", "--out", str(out)]) == 0
    assert "1-shot accuracy" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["task"] == "right" and len(record["rows"][0]["scores"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "middle"], "--task middle: the data has tasks left, right"),
        (["--task", "right", "--shots", "1,x"], "--shots 1,x: write whole numbers"),
        (["--task", "right", "--shots", "0"], "give positive numbers"),
        (["--task", "right", "--shots", "100"], "--shots 100: class .* has only"),
    ],
)
def test_refusals_exit_2_with_the_fix(trained, capsys, args, message):
    assert main(["fewshot", str(trained), *args]) == 2
    assert re.search(message, capsys.readouterr().err)
