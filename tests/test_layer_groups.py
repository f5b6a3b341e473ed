"""Layer groups, freezing, and per-task / per-group learning rates as optimizer groups."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml
from torch import nn

from mtlkit.balancing import create
from mtlkit.config import ConfigError, parse_config
from mtlkit.data import Split, TensorBatches
from mtlkit.models import (
    GroupFreezer,
    HardSharing,
    classification_head,
    create_backbone,
    group_parameters,
    layer_groups,
)
from mtlkit.tasks import ClassificationTask
from mtlkit.training import Trainer, create_optimizer
from mtlkit.training.optim import rate_groups
from mtlkit.workflows import train
from mtlkit.workflows.build import build_model, build_optimization, build_tasks, load_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPS = torch.finfo(torch.float32).eps


def _model(backbone: str = "cnn", shape=(1, 8, 8), **options) -> HardSharing:
    torch.manual_seed(0)
    trunk = create_backbone(backbone, shape, **options)
    heads = {
        "a": classification_head(trunk.out_features, 3),
        "b": classification_head(trunk.out_features, 2),
    }
    return HardSharing(trunk, heads)


def _batch(n: int = 16, shape=(1, 8, 8)) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g), {
        "a": torch.randint(0, 3, (n,), generator=g),
        "b": torch.randint(0, 2, (n,), generator=g),
    }


def _loss(model: HardSharing, x, y) -> torch.Tensor:
    out = model(x)
    return sum(nn.functional.cross_entropy(out[t], y[t]) for t in y)


def test_the_seed_cnn_has_three_stages_and_the_groups_cover_every_parameter_once():
    model = _model("cnn")
    groups = layer_groups(model)
    assert list(groups) == ["stage1", "stage2", "stage3", "heads"]
    assert [type(m).__name__ for m in groups["stage1"]] == ["Conv2d", "MaxPool2d", "ReLU"]
    assert isinstance(groups["stage3"][0], nn.Linear) or isinstance(
        groups["stage2"][-1], nn.Flatten
    )
    ids = [id(p) for modules in groups.values() for p in group_parameters(modules)]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_an_mlp_has_one_stage_per_hidden_layer_with_its_normalisation():
    model = _model("mlp", hidden=(8, 8, 4), batch_norm=True, dropout=0.1)
    groups = layer_groups(model)
    assert list(groups) == ["stage1", "stage2", "stage3", "heads"]
    assert [type(m).__name__ for m in groups["stage2"]] == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Dropout",
    ]


def test_a_frozen_group_is_bit_identical_after_a_step_and_keeps_its_statistics():
    """Frozen: no gradient, the optimizer leaves it, batch norm keeps its running statistics
    (inference mode while the network trains); the unfrozen groups move."""
    model = _model("mlp", hidden=(8, 8), batch_norm=True)
    freezer = GroupFreezer(model)
    freezer.freeze(["stage1"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = create_optimizer("sgd", model.parameters(), lr=0.1, weight_decay=0.01)
    x, y = _batch()
    model.train()
    optimizer.zero_grad()
    _loss(model, x, y).backward()
    optimizer.step()
    after = {k: v.clone() for k, v in model.state_dict().items()}
    stage1 = {k for k in before if k.startswith("trunk.1.") or k.startswith("trunk.2.")}
    assert stage1 and all(torch.equal(before[k], after[k]) for k in stage1)
    moved = [k for k in before if k not in stage1 and not torch.equal(before[k], after[k])]
    assert (
        "trunk.4.weight" in moved and "trunk.5.running_mean" in moved and "heads.a.weight" in moved
    )
    assert freezer.frozen == ["stage1"]

    freezer.unfreeze(["stage1"])
    optimizer.zero_grad()
    model.train()
    _loss(model, x, y).backward()
    optimizer.step()
    assert not torch.equal(after["trunk.1.weight"], model.state_dict()["trunk.1.weight"])
    assert not torch.equal(
        before["trunk.2.running_mean"], model.state_dict()["trunk.2.running_mean"]
    )


def test_an_unknown_group_is_refused_with_the_groups():
    with pytest.raises(ValueError, match="no layer group 'stage9'.*stage1, stage2, stage3, heads"):
        GroupFreezer(_model()).freeze(["stage9"])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_each_head_group_moves_exactly_as_sgd_says(momentum):
    """One SGD step: parameter p of group g becomes p − lr_g·∇p (momentum's first step is the
    gradient itself), up to the rounding of one float32 multiply-add."""
    model = _model("mlp", hidden=(8,))
    rates = {"a": 0.3, "b": 0.01}
    groups = rate_groups(model, 0.1, task_lr=rates)
    assert [(g.name, g.lr) for g in groups] == [
        ("shared", 0.1),
        ("heads.a", 0.3),
        ("heads.b", 0.01),
    ]
    optimizer = create_optimizer("sgd", groups, lr=0.1, momentum=momentum)
    x, y = _batch()
    _loss(model, x, y).backward()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    optimizer.step()
    for name, p in model.named_parameters():
        lr = rates[name.split(".")[1]] if name.startswith("heads.") else 0.1
        expected = before[name] - lr * grads[name]
        bound = EPS * (before[name].abs() + lr * grads[name].abs()) + 1e-30
        assert ((p.detach() - expected).abs() <= bound).all(), name


def test_group_rates_set_stages_and_heads():
    model = _model("cnn")
    groups = rate_groups(model, 0.1, task_lr={"b": 1.0}, group_lr={"stage1": 0.01, "heads": 0.5})
    assert [(g.name, g.lr) for g in groups] == [
        ("stage1", 0.01),
        ("stage2", 0.1),
        ("stage3", 0.1),
        ("heads.a", 0.5),
        ("heads.b", 1.0),
    ]


TWO_EPOCHS = {"train": {"epochs": 2}, "schedule": {"name": "cosine"}}
"""The tiny config (``tiny_config``) trained for two epochs under a cosine schedule."""


@pytest.mark.slow
def test_per_task_rates_in_the_config_reach_the_optimizer_the_schedule_and_the_log(
    tmp_path,
    offline_data,
    tiny_config,
):
    config = parse_config(
        tiny_config(
            TWO_EPOCHS,
            optim={"lr": 0.1, "task_lr": {"left": 0.02}, "task_lr_scale": {"right": 3.0}},
        )
    )
    data = load_data(config)
    model = build_model(config, data.input_shape, build_tasks(config, data.tasks))
    optimizer, _ = build_optimization(config, model, create("ew", num_tasks=2))
    rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert rates == pytest.approx({"shared": 0.1, "heads.left": 0.02, "heads.right": 0.3})

    train(config, tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["optim"]["task_lr"] == {"left": 0.02}
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert float(rows[0]["lr/heads.left"]) == pytest.approx(0.02)
    assert float(rows[0]["lr/heads.right"]) == pytest.approx(0.3)
    # the cosine schedule scales every group by the same factor
    assert float(rows[1]["lr/heads.right"]) / float(rows[1]["lr/shared"]) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("optim", "message"),
    [
        ({"task_lr": {"middle": 0.1}}, "optim.task_lr.middle: no such task is trained"),
        ({"task_lr": {"left": 0.1}, "task_lr_scale": {"left": 2}}, "optim.task_lr_scale.left"),
        ({"task_lr_scale": {"left": -1}}, "optim.task_lr_scale: left: must be a positive"),
    ],
)
def test_bad_task_rates_are_refused(optim, message, tiny_config):
    with pytest.raises(ConfigError, match=message):
        parse_config(tiny_config(TWO_EPOCHS, optim=optim))


def test_an_unknown_group_rate_is_refused_when_the_network_is_built(offline_data, tiny_config):
    config = parse_config(tiny_config(TWO_EPOCHS, optim={"group_lr_scale": {"stage7": 0.1}}))
    data = load_data(config)
    model = build_model(config, data.input_shape, build_tasks(config, data.tasks))
    with pytest.raises(ConfigError, match="optim.group_lr_scale: no layer group 'stage7'"):
        build_optimization(config, model, create("ew", num_tasks=2))


def test_a_trainer_with_per_task_rates_records_each_groups_rate():
    model = _model("mlp", hidden=(8,))
    tasks = [ClassificationTask("a", 3), ClassificationTask("b", 2)]
    optimizer = create_optimizer("sgd", rate_groups(model, 0.1, task_lr={"a": 0.5}), lr=0.1)
    trainer = Trainer(model, tasks, create("ew", num_tasks=2), optimizer, progress=False)
    x, y = _batch(32)
    split = Split(x, y)
    fit = trainer.fit(lambda epoch: TensorBatches(split, 16), 1)
    assert fit.history[0].lrs == {"shared": 0.1, "heads.a": 0.5, "heads.b": 0.1}
