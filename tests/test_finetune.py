"""Fine-tuning and adding a task: a trained run's weights carried over, frozen groups left as
they were, the unfreezing schedule, backward transfer, and what is refused."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml

from mtlkit.cli.main import main
from mtlkit.config import ConfigError, parse_config
from mtlkit.training import Trainer, load_checkpoint
from mtlkit.workflows import evaluate_run, restore_run, train
from mtlkit.workflows.add_task import add_task, backward_transfer
from mtlkit.workflows.finetune import finetune, group_sizes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_TRUNK = {"model": {"backbone_options": {"hidden": [16, 8]}}}
"""The tiny config (``tiny_config``) with a two-stage trunk."""
STAGE1 = ("trunk.1.weight", "trunk.1.bias")
"""The parameters of the first stage of an mlp trunk (after its Flatten)."""


@pytest.fixture
def trained(tmp_path, offline_data, tiny_config):
    """A tiny finished multi-mnist run on task ``left`` only."""
    raw = tiny_config(SMALL_TRUNK, tasks={"include": ["left"]})
    return train(parse_config(raw), tmp_path / "source").run_dir


def _file(tmp_path, content: dict, name: str = "change.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(content))
    return path


def _best(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "best.pt")["model"]


@pytest.mark.slow
def test_groups_lists_stages_and_heads_with_their_sizes(trained, capsys):
    sizes = group_sizes(trained)
    assert sizes == {"stage1": 784 * 16 + 16, "stage2": 16 * 8 + 8, "heads": 8 * 10 + 10}
    assert main(["groups", str(trained)]) == 0
    assert "stage1" in capsys.readouterr().out


@pytest.mark.slow
def test_a_frozen_group_keeps_the_runs_weights_bit_for_bit(trained, tmp_path):
    change = _file(tmp_path, {"finetune": {"freeze": ["stage1"]}, "optim": {"lr": 0.2}})
    result = finetune(trained, change, tmp_path / "tuned")
    before, after = _best(trained), _best(result.run_dir)
    assert all(torch.equal(before[key], after[key]) for key in STAGE1)
    assert not torch.equal(before["trunk.3.weight"], after["trunk.3.weight"])
    assert not torch.equal(before["heads.left.weight"], after["heads.left.weight"])
    record = json.loads((result.run_dir / "transfer.json").read_text())
    assert record["workflow"] == "finetune" and record["frozen_by_epoch"] == {"1": ["stage1"]}
    assert restore_run(result.run_dir).tasks[0].name == "left"  # a run folder like any other


@pytest.mark.slow
def test_gradual_unfreezing_follows_its_schedule(trained, tmp_path):
    plan = {"freeze": ["stage1", "stage2"], "unfreeze": {"stage2": 2, "stage1": 3}}
    change = {"finetune": plan, "train": {"epochs": 3}, "data": {"val_fraction": 0.0}}
    change = _file(tmp_path, change)  # no validation: the last epoch's weights are kept
    result = finetune(trained, change, tmp_path / "tuned")
    record = json.loads((result.run_dir / "transfer.json").read_text())
    assert record["frozen_by_epoch"] == {"1": ["stage1", "stage2"], "2": ["stage1"], "3": []}
    before, after = _best(trained), _best(result.run_dir)
    assert result.best_epoch == 3
    assert not torch.equal(before["trunk.1.weight"], after["trunk.1.weight"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"finetune": {"freeze": ["stage9"]}}, "finetune.freeze: no layer group 'stage9'"),
        (
            {"finetune": {"freeze": ["stage1"], "unfreeze": {"stage2": 2}}},
            "finetune: unfreeze.stage2: only a frozen group",
        ),
        ({"finetune": {"freeze": ["stage1"], "unfreeze": {"stage1": 1}}}, "epoch must be 2"),
        ({"finetune": {"frozen": ["stage1"]}}, "finetune.frozen: unknown key"),
        (
            {"finetune": {"freeze": ["stage1"], "unfreeze": {"stage1": 3}}},
            "finetune.unfreeze.stage1: epoch 3 comes after the last one",
        ),
        (
            {"model": {"backbone_options": {"hidden": [32, 8]}}},
            "model.backbone_options: the run's weights fit its own network",
        ),
        ({"tasks": {"include": ["right"]}}, "the run has no task 'right'.*mtlkit add-task"),
        ({"data": {"benchmark": "multi-mnist", "protocol": "pareto"}}, "inputs of shape"),
        (
            {"balancer": {"name": "upgrad"}, "finetune": {"freeze": ["stage1", "stage2"]}},
            "every trunk group is frozen.*loss weighting",
        ),
    ],
)
def test_refusals_name_the_key_and_the_fix(trained, tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        finetune(trained, _file(tmp_path, change), tmp_path / "tuned")
    assert not (tmp_path / "tuned" / "metrics.json").exists()


def test_not_a_run_folder_is_refused_by_the_cli(tmp_path, capsys):
    assert main(["finetune", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "is not a run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_adding_a_task_with_the_trunk_frozen_leaves_the_old_tasks_exactly(trained, tmp_path):
    change = {"tasks": {"include": ["right"]}, "finetune": {"freeze": ["stage1", "stage2"]}}
    added = add_task(trained, _file(tmp_path, change), tmp_path / "added")
    assert added.new_tasks == ["right"]
    assert added.after == added.before and added.bwt == 0.0
    run = restore_run(added.run.run_dir)
    assert sorted(t.name for t in run.tasks) == ["left", "right"]
    record = json.loads((added.run.run_dir / "transfer.json").read_text())
    assert record["bwt"] == 0.0 and record["old_tasks_before"] == added.before
    # mtlkit eval scores the tasks of its data, with the network that holds every head
    reports = evaluate_run(added.run.run_dir, "cpu")
    assert list(reports) == ["right"]
    assert reports["right"].accuracy == added.run.test["right"].accuracy


@pytest.mark.slow
def test_adding_a_task_with_the_trunk_learning_reports_the_old_tasks_change(
    trained, tmp_path, capsys
):
    out = tmp_path / "added"
    args = ["add-task", str(trained), "--set", "tasks.include=[right]", "--set", "optim.lr=0.5"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "transfer.json").read_text())
    assert record["new_tasks"] == ["right"] and f"{record['bwt']:+.4f}" in printed
    before, after = _best(trained), _best(out)
    assert not torch.equal(before["trunk.1.weight"], after["trunk.1.weight"])
    assert torch.equal(before["heads.left.weight"], after["heads.left.weight"])  # not trained


@pytest.mark.slow
def test_adding_no_new_task_is_refused(trained, tmp_path):
    with pytest.raises(ConfigError, match="every task of the data .* is a task of the run"):
        add_task(trained, None, tmp_path / "added")


def test_backward_transfer_flips_lower_is_better_metrics():
    class Fake:
        def __init__(self, name, higher):
            self.name, self.higher_is_better = name, higher

    tasks = [Fake("acc", True), Fake("rmse", False)]
    bwt = backward_transfer(tasks, {"acc": 0.9, "rmse": 1.0}, {"acc": 0.8, "rmse": 0.5})
    assert bwt == pytest.approx(((0.8 - 0.9) + (1.0 - 0.5)) / 2)


@pytest.mark.slow
def test_finetuning_trains_with_the_configs_precision(trained, tmp_path, monkeypatch):
    """``train.precision`` reaches the fine-tuning trainer (no silent float32 fallback)."""
    seen, original = [], Trainer.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("precision"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "__init__", spy)
    change = _file(tmp_path, {"train": {"precision": "bf16"}})
    finetune(trained, change, tmp_path / "tuned")
    assert seen == ["bf16"]


def _write_flat_layout(run_dir) -> None:
    """Rewrite a run's ``config.yaml`` as mtlkit wrote it before the backbone and sharing options
    were nested: every option flat under ``model``, those the run does not use as null."""
    path = run_dir / "config.yaml"
    raw = yaml.safe_load(path.read_text())
    model = raw["model"]
    unused = dict.fromkeys(("width", "blocks", "experts", "k", "gamma", "stages", "self_weight"))
    flat = {key: model[key] for key in ("backbone", "head_hidden", "sharing")}
    raw["model"] = flat | unused | model["backbone_options"] | model["sharing_options"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.slow
def test_a_run_folder_of_the_flat_layout_is_read_and_a_new_config_of_it_refused(
    trained, tmp_path, capsys
):
    before = evaluate_run(trained, quiet=True)["left"].to_dict()
    _write_flat_layout(trained)
    assert "hidden:" in (trained / "config.yaml").read_text()
    assert evaluate_run(trained, quiet=True)["left"].to_dict() == before
    tuned = finetune(trained, _file(tmp_path, {"optim": {"lr": 0.2}}), tmp_path / "tuned")
    assert tuned.run_dir.joinpath("metrics.json").is_file()
    assert main(["train", str(trained / "config.yaml"), "--out", str(tmp_path / "new")]) == 2
    error = capsys.readouterr().err
    assert re.fullmatch(
        r"mtlkit: config error: model\.(\w+) moved: use model\.\w+_options\.\1\.\n", error
    )
    assert "Traceback" not in error and not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_soft_sharing_run_is_refused_by_the_transfer_commands_with_exit_2(
    tmp_path, offline_data, capsys, tiny_config
):
    sharing = {"sharing": "mmoe", "sharing_options": {"experts": 2}}
    raw = tiny_config(SMALL_TRUNK, model=SMALL_TRUNK["model"] | sharing)
    run = train(parse_config(raw), tmp_path / "mmoe").run_dir
    fewshot = ["--task", "left", "--shots", "1", "--draws", "1", "--no-random"]
    for command in (
        ["finetune", str(run), "--out", str(tmp_path / "tuned")],
        ["add-task", str(run), "--out", str(tmp_path / "added")],
        ["fewshot", str(run), *fewshot, "--out", str(tmp_path / "few.json")],
    ):
        capsys.readouterr()
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert err == (
            f"mtlkit: config error: {run}: model.sharing is 'mmoe', whose tasks read features of "
            f"their own; {'few-shot transfer' if command[0] == 'fewshot' else 'fine-tuning'} "
            "needs the layer groups (stage1, ..., heads) of one shared trunk: use a run trained "
            "with model.sharing: hard.\n"
        ), command
    assert not any((tmp_path / name).exists() for name in ("tuned", "added", "few.json"))
