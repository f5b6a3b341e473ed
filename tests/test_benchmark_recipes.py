"""Every registered benchmark trains from its own recipe (``data: {benchmark: NAME}`` alone), and
a config's own keys override the recipe."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import yaml

from mtlkit.config import load_config, parse_config
from mtlkit.data import BENCHMARKS, load_benchmark
from mtlkit.workflows import build
from mtlkit.workflows.train import train
from test_dense_scenes import NYU_FOLDERS, _write_set

SIZE = 16
"""Training samples (per task for one dataset per task), all in one batch."""
STEPS = 3
CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture
def offline_benchmarks(monkeypatch, fake_base_data):
    """The workflows build every benchmark in the fake data dir: the MNIST-based ones from the
    tiny fake base datasets, the others (generated, or a user's copy) from the dir alone."""

    def load_offline(name, **options):
        fakes = fake_base_data.kwargs
        if "specs" not in inspect.signature(BENCHMARKS.get(name).build).parameters:
            fakes = {"data_dir": fakes["data_dir"], "quiet": True}
        return load_benchmark(name, **{**options, **fakes})

    monkeypatch.setattr(build, "load_benchmark", load_offline)


@pytest.mark.slow  # a run per benchmark, about 0.5 s each
@pytest.mark.parametrize("name", BENCHMARKS.names())
def test_every_benchmark_trains_from_its_own_recipe(
    name, tmp_path, offline_benchmarks, fake_base_data, small_dense, one_torch_thread
):
    """Three full-batch steps of the recipe's optimizer, learning rate and trunk: each loss is
    finite and the summed loss falls.

    One batch holds the whole (tiny) training set and nothing is random between steps (no
    dropout, no noise), so epoch ``e``'s recorded loss is the equally weighted sum's value at the
    parameters after ``e - 1`` steps on one fixed objective. The recipe's step (SGD's −lr·g, Adam's
    first −lr·g/|g| per coordinate) is a descent direction, so a learning rate that suits the
    benchmark lowers that objective; one too large for it (SGD at 0.05 on targets of scale 100)
    gives a growing or non-finite loss instead. Only the size of the run is set here.
    """
    for scenes in ("nyuv2", "cityscapes"):
        folders = {k: v for k, v in NYU_FOLDERS.items() if scenes == "nyuv2" or k != "normal"}
        label = "label" if scenes == "nyuv2" else "label_7"
        _write_set(fake_base_data.data_dir / scenes, folders, sizes=(SIZE, 2), label=label)
    raw = {
        "data": {"benchmark": name, "limit": SIZE, "val_fraction": 0.0},
        "train": {"epochs": STEPS, "batch_size": SIZE, "progress": False},
    }
    result = train(parse_config(raw), tmp_path / "run")

    history = result.fit.history
    assert all(math.isfinite(loss) for record in history for loss in record.train_loss.values())
    first, last = (sum(history[i].train_loss.values()) for i in (0, -1))
    assert last < first
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    for section, values in BENCHMARKS.get(name).recipe.items():
        for key, value in values.items():
            if key not in raw.get(section, {}):  # options: the recipe's, among the resolved
                shown = saved[section][key]
                if isinstance(value, dict):
                    shown = {option: shown[option] for option in value}
                assert shown == value, f"config.yaml: {section}.{key}"
    resaved = load_config(tmp_path / "run" / "config.yaml", saved=True)
    assert resaved.to_dict() == saved


def test_a_configs_own_keys_override_the_recipe():
    toy = {"benchmark": "gradnorm-toy"}
    config = parse_config({"data": toy, "optim": {"lr": 0.05}, "train": {"epochs": 2}})
    # 0.05 is also the global default: stated, it still wins over the recipe's 1e-3
    assert (config.optim.name, config.optim.lr, config.train.epochs) == ("adam", 0.05, 2)
    config = parse_config({"data": toy, "model": {"backbone_options": {"hidden": [8]}}})
    assert config.model.backbone == "mlp" and config.model.backbone_options["hidden"] == [8]


def test_a_section_whose_identity_the_config_changes_is_the_configs_alone():
    toy = {"benchmark": "gradnorm-toy"}
    config = parse_config({"data": toy, "optim": {"name": "sgd"}})
    assert (config.optim.name, config.optim.lr) == ("sgd", 0.05)  # not Adam's 1e-3
    config = parse_config({"data": toy, "model": {"backbone": "mlp", "head_hidden": 4}})
    assert config.model.backbone_options["hidden"] == [100, 100, 100, 100]
    config = parse_config({"data": {"benchmark": "nyuv2"}, "schedule": {"name": "cosine"}})
    assert config.schedule.name == "cosine" and config.schedule.step_size == 10
    assert (config.optim.name, config.train.epochs) == ("adam", 200)


def test_a_table_config_takes_no_benchmarks_recipe(tmp_path):
    table = tmp_path / "rows.csv"
    table.write_text("x,y\n1,0\n2,1\n")
    config = parse_config(
        {"data": {"table": str(table)}, "tasks": {"y": {"type": "binary", "column": "y"}}}
    )
    assert (config.model.backbone, config.optim.name, config.train.epochs) == ("mlp", "sgd", 10)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_every_ready_config_loads(path):
    assert load_config(path).data.benchmark in BENCHMARKS
