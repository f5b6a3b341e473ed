"""Training on a user's own data: every balancing method on a table with missing labels and on
one dataset per task (mnist+fashion), per-task gradients from each task's own batch, and model
selection across tasks whose metrics point different ways."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from mtlkit.balancing import available, create
from mtlkit.balancing.engine import task_jacobian
from mtlkit.data import (
    MultiInputBatches,
    TableTask,
    TaskSpec,
    TensorBatches,
    load_benchmark,
    load_table,
)
from mtlkit.models import HardSharing, classification_head, create_backbone
from mtlkit.tasks import ClassificationReport, ClassificationTask, RegressionReport, create_task
from mtlkit.training import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METHODS = [info.name for info in available() if info.name != "krum"]
"""Every method but Krum, which is defined from K = n_byzantine + 3 = 3 tasks (these have 2)."""
REQUIRED_OPTIONS = {
    "fixed": lambda k: {"weights": [1.0] * k},
    "trimmed-mean": lambda k: {"trim_number": (k - 1) // 2},
}


def _balancer(name: str, num_tasks: int):
    return create(name, num_tasks=num_tasks, **REQUIRED_OPTIONS.get(name, lambda k: {})(num_tasks))


def _trainer(specs, input_shape, method: str, seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    trunk = create_backbone("mlp", input_shape, hidden=(16,))
    tasks = [create_task(spec) for spec in specs]
    heads = {t.name: classification_head(trunk.out_features, t.output_size) for t in tasks}
    model = HardSharing(trunk, heads)
    balancer = _balancer(method, len(tasks))
    params = [*model.parameters(), *balancer.parameters()]
    return Trainer(model, tasks, balancer, torch.optim.SGD(params, lr=0.01), progress=False)


@pytest.fixture(scope="module")
def customers():
    """24 training rows (the first 12 without a spend label), 8 validation, 8 test."""
    rng = np.random.default_rng(0)
    rows = 40
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "region": rng.choice(["north", "south"], rows),
            "churned": np.resize(["yes", "no"], rows),
            "plan": np.resize(["basic", "plus", "premium"], rows),
            "spend": rng.normal(60, 15, rows),
            "split": ["train"] * 24 + ["val"] * 8 + ["test"] * 8,
        }
    )
    frame.loc[:11, "spend"] = np.nan
    frame.loc[10:30:3, "plan"] = None
    tasks = [
        TableTask("churn", "binary", column="churned"),
        TableTask("plan", "classification", column="plan"),
        TableTask("spend", "regression", column="spend", loss="huber"),
    ]
    return load_table(frame, tasks, split_column="split", quiet=True)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_on_a_table_with_missing_labels(customers, method):
    """The first of the two batches has no spend label: that task's loss is 0 there, flagged,
    never NaN."""
    trainer = _trainer(customers.tasks, customers.input_shape, method)
    record = trainer.fit(lambda epoch: TensorBatches(customers.train, 12), epochs=1).history[0]
    assert record.unlabelled_steps == {"churn": 0, "plan": 0, "spend": 1}
    assert all(math.isfinite(v) for v in record.train_loss.values())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_on_one_dataset_per_task(fake_base_data, method):
    data = load_benchmark("mnist+fashion", limit=16, **fake_base_data.kwargs)
    trainer = _trainer(data.tasks, data.input_shape, method)
    batches = MultiInputBatches(data.train, 8, epoch=1, seed=0)
    record = trainer.fit(lambda epoch: batches, epochs=1).history[0]
    assert set(record.train_loss) == {"digit", "fashion"}
    assert all(math.isfinite(v) and v > 0 for v in record.train_loss.values())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_the_mnist_fashion_benchmark_gives_each_task_its_own_images(fake_base_data):
    data = load_benchmark("mnist+fashion", val_fraction=0.25, **fake_base_data.kwargs)
    assert data.multi_input and [t.name for t in data.tasks] == ["digit", "fashion"]
    assert {task: len(split) for task, split in data.train.items()} == {"digit": 38, "fashion": 30}
    assert {task: len(split) for task, split in data.val.items()} == {"digit": 12, "fashion": 10}
    assert {task: len(split) for task, split in data.test.items()} == {"digit": 20, "fashion": 16}
    assert data.input_shape == (1, 28, 28) and set(data.train["digit"].targets) == {"digit"}


def test_each_task_gradient_comes_from_its_own_batch():
    """Row k of the shared Jacobian in a multi-input step is the gradient of task k's loss on
    task k's batch alone, as if the other task were not there."""
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (5,), hidden=(8,))
    tasks = [ClassificationTask("a", 3), ClassificationTask("b", 2)]
    model = HardSharing(trunk, {t.name: classification_head(8, t.num_classes) for t in tasks})
    inputs = {"a": torch.randn(6, 5), "b": torch.randn(4, 5)}
    targets = {"a": torch.tensor([0, 1, 2, 0, 1, 2]), "b": torch.tensor([0, 1, 1, 0])}
    features = model.encode(inputs)
    outputs = model.decode(features)
    losses = [t.loss(outputs[t.name], targets[t.name]) for t in tasks]
    shared = list(model.shared_parameters())
    jacobian = task_jacobian(losses, shared, [features["a"], features["b"]])
    for k, task in enumerate(tasks):
        alone = task.loss(model(inputs[task.name])[task.name], targets[task.name])
        grads = torch.autograd.grad(alone, shared)
        expected = torch.cat([g.reshape(-1) for g in grads])
        # the same float32 operations in another order of accumulation: a few ulps
        torch.testing.assert_close(jacobian[k], expected, rtol=1e-5, atol=1e-7)


def test_selection_averages_tasks_on_one_scale_with_errors_negated():
    """An epoch whose RMSE is 0.1 standard deviation lower beats one whose accuracy is 0.05
    higher: each task weighs in on the same scale, and lower is better for the error."""
    specs = [
        TaskSpec("plan", 2),
        TaskSpec("spend", type="regression", target_mean=50.0, target_std=20.0),
    ]
    trainer = _trainer(specs, (3,), "ew")
    accurate = ClassificationReport.from_confusion_matrix(torch.tensor([[80, 20], [0, 100]]))
    less = ClassificationReport.from_confusion_matrix(torch.tensor([[70, 30], [0, 100]]))
    std = trainer.tasks[1].target_std
    first = {"plan": accurate, "spend": RegressionReport(0, 0.6 * std, 0, 0, 9)}
    second = {"plan": less, "spend": RegressionReport(0, 0.45 * std, 0, 0, 9)}
    assert trainer.selection_score(second) > trainer.selection_score(first)
    nan_metric = {"plan": accurate, "spend": RegressionReport(0, math.nan, 0, 0, 0)}
    assert trainer.selection_score(nan_metric) == pytest.approx(0.9)  # left out, not NaN
