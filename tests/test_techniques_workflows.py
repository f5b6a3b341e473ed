"""The techniques through a whole run: config to run folder, re-evaluation, teachers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch

from mtlkit.config import ConfigError, parse_config
from mtlkit.data import InputError, TableTask, TensorBatches, load_table
from mtlkit.models import TemperatureScaled
from mtlkit.tasks import ClassificationTask
from mtlkit.training import EMATeacher, evaluate, load_checkpoint
from mtlkit.workflows import RunDir, evaluate_run, predict, restore_run, train
from mtlkit.workflows.build import build_model, build_tasks, eval_batches, load_data
from mtlkit.workflows.teachers import build_teachers

pytestmark = pytest.mark.usefixtures("one_torch_thread", "offline_data")


LENET = {"model": {"backbone": "lenet", "backbone_options": {"batch_norm": True}}}
"""The tiny config (``tiny_config``) on a LeNet trunk with batch normalisation."""


@pytest.mark.slow
def test_a_run_with_every_technique_reproduces_its_test_metrics(tmp_path, tiny_config):
    config = parse_config(
        tiny_config(
            LENET,
            tasks={
                "label_smoothing": 0.1,
                "temperature": "fit",
                "distill": {"teacher": "ema", "alpha": 0.3, "ema_decay": 0.9},
                "left": {"focal_gamma": 2.0, "instance_weights": "inverse_frequency"},
            },
            noise={"gaussian": 0.1, "shift": 1, "per_task": True},
            regularization={"trunk": {"l1": 1e-5, "l2": 1e-4}, "heads": {"l2": 1e-3}},
            eval={"views": 3, "combine": "mean"},
        )
    )
    result = train(config, tmp_path / "run")
    folder = RunDir(result.run_dir)
    with folder.log.open() as file:
        row = next(csv.DictReader(file))
    assert float(row["train/penalty/trunk"]) > 0 and float(row["train/penalty/heads"]) > 0
    metrics = json.loads(folder.metrics.read_text())
    assert set(metrics["fitted_temperatures"]) == {"left", "right"}
    state = load_checkpoint(folder.best)["model"]
    assert float(state["heads.left.temperature"]) == pytest.approx(
        metrics["fitted_temperatures"]["left"]
    )
    assert 0.0 <= metrics["test"]["left"]["ece"] <= 1.0
    again = evaluate_run(result.run_dir, device="cpu")  # the same three views, from the seed
    assert {t: r.to_dict() for t, r in again.items()} == metrics["test"]
    run = restore_run(result.run_dir, "cpu")
    plain = evaluate(
        run.model, run.tasks, eval_batches(run.config, load_data(run.config).test), run.device
    )
    assert evaluate_run(result.run_dir, device="cpu", views=1) == plain
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32))
    assert len(predict(result.run_dir, images, device="cpu").table) == 5


@pytest.mark.slow
def test_distillation_from_a_baselines_folder_and_from_a_run_folder(tmp_path, tiny_config):
    teacher = train(
        parse_config(tiny_config(LENET, tasks={"include": ["left"]})),
        tmp_path / "base" / "single-left",
    )
    both = train(parse_config(tiny_config(LENET)), tmp_path / "both")
    config = parse_config(
        tiny_config(
            LENET,
            tasks={
                "left": {"distill": {"teacher": str(tmp_path / "base")}},
                "right": {"distill": {"teacher": str(both.run_dir), "alpha": 1.0}},
            },
        )
    )
    data = load_data(config)
    tasks = build_tasks(config, data.tasks, data.train)
    teachers = build_teachers(config, tasks, build_model(config, data.input_shape, tasks))
    assert len(teachers) == 1 and teachers[0].tasks == ("left", "right")
    x = data.test.inputs[:4]
    soft = teachers[0].outputs(x)
    assert torch.equal(soft["left"], restore_run(teacher.run_dir, "cpu").model(x)["left"])
    assert torch.equal(soft["right"], restore_run(both.run_dir, "cpu").model(x)["right"])
    assert train(config, tmp_path / "student").best_epoch == 1
    with pytest.raises(ConfigError, match=r"^views: 3 views of an input differ only by noise"):
        evaluate_run(both.run_dir, device="cpu", views=3)


@pytest.mark.slow
def test_a_missing_teacher_is_refused_with_the_fix(tmp_path, tiny_config):
    config = parse_config(
        tiny_config(LENET, tasks={"distill": {"teacher": str(tmp_path / "nowhere")}})
    )
    with pytest.raises(ConfigError, match=r"distill\.teacher: .* neither a run folder"):
        train(config, tmp_path / "run")


@pytest.mark.slow
def test_the_ema_teacher_averages_the_student(tiny_config):
    config = parse_config(tiny_config(LENET))
    data = load_data(config)
    tasks = build_tasks(config, data.tasks)
    student = build_model(config, data.input_shape, tasks)
    teacher = EMATeacher(student, ["left"], decay=0.75)
    teacher.update(student)  # the first update copies the student
    before = {k: v.clone() for k, v in teacher.average.module.state_dict().items()}
    with torch.no_grad():
        for param in student.parameters():
            param.add_(1.0)
    teacher.update(student)
    for name, param in student.named_parameters():
        expected = 0.75 * before[name] + 0.25 * param.detach()
        assert torch.allclose(teacher.average.module.state_dict()[name], expected, atol=1e-6)


def test_a_fixed_temperature_wraps_the_head_and_one_leaves_it_as_it_was(tiny_config):
    config = parse_config(tiny_config(LENET, tasks={"right": {"temperature": 2.0}}))
    data = load_data(config)
    model = build_model(config, data.input_shape, build_tasks(config, data.tasks))
    assert isinstance(model.heads["right"], TemperatureScaled)
    assert float(model.heads["right"].temperature) == 2.0
    assert isinstance(model.heads["left"], torch.nn.Linear)


def _weighted_table(tmp_path) -> str:
    rng = np.random.default_rng(0)
    rows = 60
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=rows),
            "x2": rng.normal(size=rows),
            "plan": np.resize(["basic", "plus", "premium"], rows),
            "spend": rng.normal(60, 15, rows),
            "w": rng.uniform(0.0, 3.0, rows),
        }
    )
    frame.loc[3, "plan"] = np.nan  # unlabelled: its weight cell is not read
    frame.loc[3, "w"] = np.nan
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.slow
def test_a_weight_column_weighs_each_row_of_its_task(tmp_path):
    path = _weighted_table(tmp_path)
    tasks = [
        TableTask("plan", "classification", column="plan", weight_column="w"),
        TableTask("spend", "regression", column="spend"),
    ]
    data = load_table(path, tasks, val_fraction=0.0, quiet=True)
    assert "w" not in data.preprocessing.features.columns  # a weight is no feature
    frame = pd.read_csv(path)
    assert set(data.train.weights) == {"plan"}
    every = np.sort(
        np.concatenate([data.train.weights["plan"].numpy(), data.test.weights["plan"].numpy()])
    )
    assert every == pytest.approx(np.sort(frame["w"].fillna(0.0).to_numpy(np.float32)))
    batch = next(iter(TensorBatches(data.train, 16)))
    assert torch.equal(batch.weights["plan"], data.train.weights["plan"][:16])
    config = parse_config(
        {
            "data": {"table": path, "val_fraction": 0.0},
            "tasks": {
                "plan": {"type": "classification", "column": "plan", "weight_column": "w"},
                "spend": {"type": "regression", "column": "spend"},
            },
            "train": {"epochs": 1, "batch_size": 16, "progress": False},
        }
    )
    assert train(config, tmp_path / "run").best_epoch == 1


def test_the_trainer_passes_a_batch_s_weights_to_the_loss():
    task = ClassificationTask("plan", 3)
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    weights = torch.tensor([0.0, 1.0, 0.0, 0.0])
    per_row = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert torch.equal(task.loss(logits, target, weights=weights), per_row[1])


def test_a_bad_weight_is_refused_naming_the_row(tmp_path):
    path = _weighted_table(tmp_path)
    frame = pd.read_csv(path)
    frame.loc[5, "w"] = -1.0
    frame.to_csv(path, index=False)
    tasks = [TableTask("plan", "classification", column="plan", weight_column="w")]
    with pytest.raises(InputError, match=r"column 'w', row 6 \(line 7\): the weight -1\.0 is not"):
        load_table(path, tasks, val_fraction=0.0, quiet=True)
