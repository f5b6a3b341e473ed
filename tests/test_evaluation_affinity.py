"""Inter-task affinity (TAG), gradient cosines, the grouping search, and probes leaving the
training unchanged."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtlkit.balancing import create
from mtlkit.data import Batch, Split, TensorBatches
from mtlkit.evaluation.affinity import best_groupings, grouping_score, suggested_grouping
from mtlkit.measure.affinity import TaskAffinityProbe, lookahead_affinity
from mtlkit.measure.task_cosine import gramian_cosines
from mtlkit.models import HardSharing
from mtlkit.tasks import ClassificationTask
from mtlkit.training import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BELL = [1, 1, 2, 5, 15, 52, 203]


def _model(seed: int = 0, classes: int = 3) -> HardSharing:
    """A small trunk and two heads with the same weights (the tasks read the features alike)."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(nn.Linear(6, 8), nn.Tanh())
    trunk.out_features = 8
    head = nn.Linear(8, classes)
    twin = nn.Linear(8, classes)
    twin.load_state_dict(head.state_dict())
    return HardSharing(trunk, {"a": head, "b": twin})


def _affinity(targets_b, classes: int) -> torch.Tensor:
    torch.manual_seed(1)
    inputs = torch.randn(64, 6)
    targets_a = torch.randint(0, classes, (64,))
    batch = Batch(inputs, {"a": targets_a, "b": targets_b(targets_a)})
    model = _model(classes=classes)
    tasks = [ClassificationTask("a", classes), ClassificationTask("b", classes)]
    outputs = model(inputs)
    losses = [task.loss(outputs[task.name], batch.targets[task.name]) for task in tasks]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    affinity = lookahead_affinity(model, tasks, batch, losses, lr=0.5)
    for name, param in model.named_parameters():  # the look-ahead is functional
        assert torch.equal(param, before[name]) and param.grad is None
    return affinity


def test_identical_tasks_have_positive_affinity():
    affinity = _affinity(lambda a: a, classes=3)
    assert affinity[0, 1] > 0 and affinity[1, 0] > 0
    torch.testing.assert_close(affinity[0, 1], affinity[0, 0])  # b is a, so the same change


def test_opposite_tasks_have_negative_affinity():
    # Binary, b's label the other class: b's logit gradient is a's with the sign flipped (up to
    # 2p − 1, which is ≈ 0 for a fresh head), so a step for one raises the other's loss.
    affinity = _affinity(lambda a: 1 - a, classes=2)
    assert affinity[0, 0] > 0 and affinity[1, 1] > 0  # a step on a task lowers its own loss
    assert affinity[0, 1] < 0 and affinity[1, 0] < 0


def test_cosines_of_a_gramian():
    jacobian = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, 0.0]])
    cosines = gramian_cosines(jacobian @ jacobian.T)
    expected = torch.tensor(
        [
            [1.0, 1 / math.sqrt(2), -1.0],
            [1 / math.sqrt(2), 1.0, -1 / math.sqrt(2)],
            [-1.0, -1 / math.sqrt(2), 1.0],
        ]
    )
    torch.testing.assert_close(cosines, expected)


def test_grouping_search_finds_the_blocks():
    names = ["a", "b", "c", "d"]
    # a and c help each other, b and d help each other, across the pairs they hurt.
    z = [
        [0.5, -0.2, 0.3, -0.1],
        [-0.2, 0.5, -0.3, 0.4],
        [0.2, -0.1, 0.5, -0.2],
        [-0.1, 0.3, -0.2, 0.5],
    ]
    groupings = best_groupings(z, names)
    assert [len(g.groups) for g in groupings] == [1, 2, 3, 4]
    assert groupings[1].groups == (("a", "c"), ("b", "d"))
    assert groupings[1].score == pytest.approx((0.2 + 0.3 + 0.3 + 0.4) / 4)
    assert groupings[3].score == 0.0
    assert suggested_grouping(groupings) == groupings[1]
    assert grouping_score(z, [[0, 1, 2, 3]]) == pytest.approx(
        sum(sum(z[i][j] for i in range(4) if i != j) / 3 for j in range(4)) / 4
    )
    # Every partition is searched: one best per count, and the counts follow the Bell numbers.
    from mtlkit.evaluation.affinity import _partitions

    for k in range(1, 7):
        assert sum(1 for _ in _partitions(list(range(k)))) == BELL[k]
    with pytest.raises(ValueError, match="3×3"):
        best_groupings(z, names[:3])


def _train(probes, task_cosine_every=0):
    torch.manual_seed(2)
    inputs = torch.randn(48, 6)
    split = Split(inputs, {"a": torch.randint(0, 3, (48,)), "b": torch.randint(0, 3, (48,))})
    model = _model(seed=3)
    tasks = [ClassificationTask("a", 3), ClassificationTask("b", 3)]
    balancer = create("upgrad", num_tasks=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(
        model,
        tasks,
        balancer,
        optimizer,
        progress=False,
        probes=probes,
        task_cosine_every=task_cosine_every,
    )
    fit = trainer.fit(lambda epoch: TensorBatches(split, 8, shuffle=True, seed=epoch), 2)
    return model, fit


@pytest.mark.slow
def test_probes_leave_the_training_unchanged_and_measure_every_n_steps():
    plain, _ = _train([])
    probe = TaskAffinityProbe(["a", "b"], every=4)
    probed, fit = _train([probe], task_cosine_every=3)
    for (name, p), q in zip(plain.named_parameters(), probed.parameters()):
        assert torch.equal(p, q), name
    assert probe.steps == [4, 8, 12]  # 6 steps per epoch, 2 epochs
    affinity, cosine = probe.mean_affinity(), probe.mean_cosine()
    assert len(affinity) == 2 and all(affinity[i][i] > 0 for i in range(2))
    assert cosine[0][0] == pytest.approx(1.0) and cosine[0][1] == pytest.approx(cosine[1][0])
    assert [s.step for s in fit.task_cosines] == [3, 6, 9, 12]
    assert list(fit.task_cosines[0].cosines) == ["a~b"]
    assert fit.history[0].task_cosine == {
        "a~b": pytest.approx(sum(s.cosines["a~b"] for s in fit.task_cosines[:2]) / 2)
    }
    with pytest.raises(ValueError, match="no step was measured"):
        TaskAffinityProbe(["a", "b"], every=100).mean_affinity()
