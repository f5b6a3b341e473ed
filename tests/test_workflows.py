"""The workflows under the CLI: resolved configs, what a run folder holds, what is refused."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
import yaml

from mtlkit.config import parse_config
from mtlkit.training import load_checkpoint
from mtlkit.workflows import RunDir, train
from mtlkit.workflows.build import (
    build_balancer,
    build_model,
    build_optimization,
    build_tasks,
    load_data,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TWO_EPOCHS = {"train": {"epochs": 2}, "schedule": {"name": "cosine"}}
"""The tiny config (``tiny_config``) trained for two epochs under a cosine schedule."""


@pytest.mark.slow
def test_config_yaml_holds_every_default_of_the_method(tmp_path, offline_data, tiny_config):
    """A cagrad run saves c and rescale, so a later change of defaults cannot change a re-run."""
    config = parse_config(tiny_config(TWO_EPOCHS, balancer={"name": "cagrad"}))
    assert config.balancer.options == {"c": 0.4, "rescale": 1}
    train(config, tmp_path / "run")
    saved = yaml.safe_load(RunDir(tmp_path / "run").config.read_text())
    assert saved["balancer"] == {"name": "cagrad", "c": 0.4, "rescale": 1}
    assert parse_config(saved) == config


def test_a_seeded_method_follows_the_run_seed_unless_it_sets_its_own(tiny_config):
    """The method's seed is the one option not written out: a saved config re-run with
    ``--set seed=N`` changes the method's draws along with the data's and the model's."""
    follows = parse_config(tiny_config(TWO_EPOCHS, seed=5, balancer={"name": "pcgrad"}))
    assert follows.balancer.options == {}
    assert build_balancer(follows, 2).seed == 5
    reseeded = parse_config({**follows.to_dict(), "seed": 8})
    assert build_balancer(reseeded, 2).seed == 8
    own = parse_config(tiny_config(TWO_EPOCHS, seed=5, balancer={"name": "pcgrad", "seed": 1}))
    assert own.balancer.options == {"seed": 1} and build_balancer(own, 2).seed == 1


@pytest.mark.slow
def test_last_checkpoint_holds_the_whole_training_state(tmp_path, offline_data, tiny_config):
    """``last.pt`` restores model, optimizer (momentum), schedule and balancer state exactly."""
    config = parse_config(
        tiny_config(TWO_EPOCHS, balancer={"name": "dwa"}, optim={"weight_decay": 1e-3})
    )
    result = train(config, tmp_path / "run")
    state = load_checkpoint(RunDir(result.run_dir).last)
    assert set(state) == {
        "model",
        "optimizer",
        "scheduler",
        "balancer",
        "progress",
        "hooks",
        "rng",
        "processes",
        "config",
    }
    # no noise, teachers, penalties or probes configured: only the hooks every run has
    assert set(state["hooks"]) == {"precision", "nonfinite", "meter"}
    assert state["progress"]["epoch"] == 3 and state["progress"]["step"] == 0
    assert len(state["progress"]["history"]) == 2 and state["progress"]["best_model"] is not None
    assert len(state["rng"]) == state["processes"] == 1
    assert state["config"] == config.to_dict()

    data = load_data(config)
    tasks = build_tasks(config, data.tasks)
    model = build_model(config, data.input_shape, tasks)
    balancer = build_balancer(config, len(tasks))
    optimizer, scheduler = build_optimization(config, model, balancer)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    balancer.load_state_dict(state["balancer"])
    assert scheduler.last_epoch == 2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)  # cosine over 2 epochs
    momentum = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(m is not None and bool(m.abs().sum() > 0) for m in momentum)
    torch.testing.assert_close(balancer.state_dict(), state["balancer"], rtol=0, atol=0)
    assert state["balancer"]  # DWA keeps its loss history: there is a state to restore


@pytest.mark.slow
def test_metrics_json_holds_what_the_grid_workflows_read(tmp_path, offline_data, tiny_config):
    """The selection score, the test losses, the primary metrics and the step time."""
    config = parse_config(tiny_config(TWO_EPOCHS, balancer={"name": "mgda-ub"}))
    result = train(config, tmp_path / "run")
    metrics = json.loads(RunDir(result.run_dir).metrics.read_text())
    scores = [record["score"] for record in metrics["history"]]
    assert metrics["best_val_score"] == max(scores) == scores[metrics["best_epoch"] - 1]
    assert metrics["primary_metric"] == {
        task: {"name": "accuracy", "higher_is_better": True} for task in ("left", "right")
    }
    steps = [record["step_seconds"] for record in metrics["history"]]
    assert metrics["step_seconds"] == statistics.median(steps) and min(steps) > 0
    assert metrics["task_cosine"] == []  # not asked for

    data = load_data(config)
    tasks = build_tasks(config, data.tasks)
    model = build_model(config, data.input_shape, tasks)
    model.load_state_dict(load_checkpoint(RunDir(result.run_dir).best)["model"])
    model.eval()
    with torch.no_grad():
        outputs = model(data.test.inputs)
    for task in tasks:
        expected = torch.nn.functional.cross_entropy(
            outputs[task.name], data.test.targets[task.name]
        )
        assert metrics["test_loss"][task.name] == pytest.approx(float(expected), rel=1e-5)
        assert result.test_loss[task.name] == metrics["test_loss"][task.name]
