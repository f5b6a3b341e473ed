"""The loss-side techniques against hand-computed values: per-task label smoothing,
distillation, instance weights, focal loss, L1/L2 penalties, ECE and temperature scaling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtlkit.config import ConfigError, parse_config
from mtlkit.data import Split, TaskSpec
from mtlkit.models import TemperatureScaled
from mtlkit.tasks import (
    BinaryTask,
    ClassificationMetrics,
    ClassificationTask,
    RegressionTask,
    masked_mean,
)
from mtlkit.tasks.weighting import InverseFrequency
from mtlkit.training import ParameterPenalties, Penalty
from mtlkit.training.calibration import best_temperature
from mtlkit.workflows.build import build_tasks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# float32 rounding of a loss of order 1 summed over a few rows: a few ulps of 1.
F32 = 1e-6

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [1.5, 1.5, -2.0]])
TARGET = torch.tensor([0, 2, 1, 1])


def _log_softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    scaled = [v / temperature for v in row]
    top = max(scaled)
    norm = top + math.log(sum(math.exp(v - top) for v in scaled))
    return [v - norm for v in scaled]


def _hand_smoothed_ce(logits: torch.Tensor, target: torch.Tensor, eps: float) -> float:
    """(1 − ε)·(−log p_y) + ε/C·Σ_c (−log p_c), averaged over rows, in float64."""
    total = 0.0
    for row, y in zip(logits.tolist(), target.tolist()):
        log_p = _log_softmax(row)
        total += (1 - eps) * -log_p[y] + eps / len(row) * -sum(log_p)
    return total / len(target)


def _specs() -> list[TaskSpec]:
    return [TaskSpec("left", 3), TaskSpec("right", 3)]


def test_label_smoothing_per_task_equals_the_hand_value():
    config = parse_config({"tasks": {"label_smoothing": 0.1, "left": {"label_smoothing": 0.3}}})
    left, right = build_tasks(config, _specs())
    assert (left.label_smoothing, right.label_smoothing) == (0.3, 0.1)
    for task, eps in ((left, 0.3), (right, 0.1)):
        assert float(task.loss(LOGITS, TARGET)) == pytest.approx(
            _hand_smoothed_ce(LOGITS, TARGET, eps), abs=F32
        )


def test_distillation_equals_the_hand_value():
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.5, 0.5, 0.5], [3.0, -1.0, 1.0]])
    alpha, temperature = 0.7, 2.5
    task = ClassificationTask("t", 3, distill_alpha=alpha, distill_temperature=temperature)
    hand = 0.0
    for s, t, y in zip(LOGITS.tolist(), teacher.tolist(), TARGET.tolist()):
        ce = -_log_softmax(s)[y]
        log_s, log_t = _log_softmax(s, temperature), _log_softmax(t, temperature)
        kl = sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_t, log_s))
        hand += (1 - alpha) * ce + alpha * temperature**2 * kl
    assert float(task.loss(LOGITS, TARGET, teacher=teacher)) == pytest.approx(hand / 4, abs=F32)
    # no gradient reaches the teacher; without a teacher the loss is the plain cross-entropy
    student = LOGITS.clone().requires_grad_()
    source = teacher.clone().requires_grad_()
    task.loss(student, TARGET, teacher=source).backward()
    assert source.grad is None and student.grad is not None
    assert torch.equal(task.loss(LOGITS, TARGET), F.cross_entropy(LOGITS, TARGET))


def test_a_teacher_for_a_task_without_soft_labels_is_refused():
    with pytest.raises(ValueError, match="only classification tasks learn from a teacher"):
        RegressionTask("r").loss(torch.zeros(2, 1), torch.zeros(2), teacher=torch.zeros(2, 1))


@pytest.mark.parametrize("rows", [1, 4, 7, 256, 1000])
def test_all_ones_instance_weights_give_exactly_the_plain_mean(rows):
    """Weights of 1 give, bit for bit, the plain mean of the per-row losses (over the labelled
    rows); the unweighted fast path (cross-entropy's own mean) agrees up to float32 rounding."""
    generator = torch.Generator().manual_seed(rows)
    logits = torch.randn(rows, 5, generator=generator)
    target = torch.randint(0, 5, (rows,), generator=generator)
    mask = torch.rand(rows, generator=generator) < 0.7
    per_row = F.cross_entropy(logits, target, reduction="none")
    ones = ClassificationTask("t", 5, instance_weights=lambda out, y: torch.ones(len(y)))
    assert torch.equal(ones.loss(logits, target), per_row.mean())
    assert torch.equal(ones.loss(logits, target, mask), masked_mean(per_row, mask))
    plain = ClassificationTask("t", 5)
    assert torch.equal(plain.loss(logits, target, mask), masked_mean(per_row, mask))
    assert float(ones.loss(logits, target)) == pytest.approx(
        float(plain.loss(logits, target)), rel=F32
    )
    binary = BinaryTask("b")
    value = torch.randn(rows, 1, generator=generator)
    label = torch.randint(0, 2, (rows,), generator=generator)
    weighted = binary.loss(value, label, mask, weights=torch.ones(rows))
    assert torch.equal(weighted, binary.loss(value, label, mask))


def test_instance_weights_give_the_weighted_mean():
    weights = torch.tensor([1.0, 0.0, 2.0, 1.0])
    per_row = F.cross_entropy(LOGITS, TARGET, reduction="none")
    task = ClassificationTask("t", 3)
    hand = float((weights * per_row).sum() / weights.sum())
    assert float(task.loss(LOGITS, TARGET, weights=weights)) == pytest.approx(hand, abs=F32)
    mask = torch.tensor([True, True, False, True])  # the masked row's weight does not count
    hand = float((weights * per_row)[mask].sum() / weights[mask].sum())
    assert float(task.loss(LOGITS, TARGET, mask, weights=weights)) == pytest.approx(hand, abs=F32)


def test_inverse_class_frequency():
    weighting = InverseFrequency(torch.tensor([1, 3, 0]))  # N = 4 over the 2 present classes
    assert weighting.class_weights.tolist() == pytest.approx([2.0, 2 / 3, 0.0])
    assert weighting(LOGITS, TARGET).tolist() == pytest.approx([2.0, 0.0, 2 / 3, 2 / 3])
    config = parse_config({"tasks": {"right": {"instance_weights": "inverse_frequency"}}})
    train = Split(torch.zeros(4, 1), {"left": TARGET, "right": torch.tensor([0, 1, 1, 1])})
    left, right = build_tasks(config, _specs(), train)
    assert left.instance_weights is None
    assert right.instance_weights.class_weights.tolist() == pytest.approx([2.0, 2 / 3, 0.0])


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_with_gamma_two_the_hand_value():
    focal0 = ClassificationTask("t", 3, focal_gamma=0.0)
    assert float(focal0.loss(LOGITS, TARGET)) == pytest.approx(
        float(F.cross_entropy(LOGITS, TARGET)), rel=F32
    )
    hand = 0.0
    for row, y in zip(LOGITS.tolist(), TARGET.tolist()):
        log_p = _log_softmax(row)[y]
        hand += (1 - math.exp(log_p)) ** 2 * -log_p
    focal2 = ClassificationTask("t", 3, focal_gamma=2.0)
    assert float(focal2.loss(LOGITS, TARGET)) == pytest.approx(hand / 4, abs=F32)


def test_penalties_add_exactly_their_gradient_and_report_their_value():
    generator = torch.Generator().manual_seed(0)
    trunk = torch.nn.Parameter(torch.randn(3, 4, generator=generator))
    head = torch.nn.Parameter(torch.randn(5, generator=generator))
    balancer = torch.nn.Parameter(torch.randn(2, generator=generator))
    grads = [torch.randn(p.shape, generator=generator) for p in (trunk, head, balancer)]
    for param, grad in zip((trunk, head, balancer), grads):
        param.grad = grad.clone()
    penalties = ParameterPenalties(
        {"trunk": [trunk], "heads": [head], "balancer": [balancer]},
        {"trunk": Penalty(l1=0.01, l2=0.1), "heads": Penalty(l2=0.5), "balancer": Penalty()},
    )
    values = penalties.apply()
    expected_trunk = grads[0] + (0.01 * trunk.detach().sign() + 0.1 * trunk.detach())
    assert torch.allclose(trunk.grad, expected_trunk, rtol=0, atol=F32)
    assert torch.allclose(head.grad, grads[1] + 0.5 * head.detach(), rtol=0, atol=F32)
    assert torch.equal(balancer.grad, grads[2])  # no penalty: untouched
    assert set(values) == {"trunk", "heads"}
    theta = trunk.detach()
    hand = 0.01 * float(theta.abs().sum()) + 0.05 * float(theta.square().sum())
    assert values["trunk"] == pytest.approx(hand, rel=F32)


def test_ece_equals_the_hand_example():
    """Confidences 0.95 (right), 0.95 (wrong), 0.65, 0.65 (both right): two bins, each with half
    the rows: ECE = ½·|0.5 − 0.95| + ½·|1 − 0.65| = 0.4."""
    probabilities = torch.tensor(
        [[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.35, 0.65]], dtype=torch.float64
    )
    metrics = ClassificationMetrics(2)
    metrics.update(probabilities.log().float(), torch.tensor([0, 1, 1, 1]))
    report = metrics.compute()
    assert report.ece == pytest.approx(0.4, abs=F32)
    assert report.summary()["ece"] == report.ece
    # an unlabelled row is left out of the ECE too
    masked = ClassificationMetrics(2)
    extra = torch.cat([probabilities.log().float(), torch.tensor([[0.0, -5.0]])])
    masked.update(extra, torch.tensor([0, 1, 1, 1, 1]), torch.tensor([True] * 4 + [False]))
    assert masked.compute().ece == pytest.approx(0.4, abs=F32)


def test_temperature_scaling_divides_and_the_fit_recovers_an_overconfident_scale():
    head = TemperatureScaled(torch.nn.Linear(2, 3), 2.0)
    x = torch.randn(4, 2)
    assert torch.allclose(head(x), head.head(x) / 2.0)
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20_000, 4, generator=generator)
    labels = torch.multinomial(true_logits.softmax(dim=1), 1, generator=generator).squeeze(1)
    # logits three times too sharp: the fitted temperature undoes it (MLE, ~1 % at this N)
    assert best_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.05)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"tasks": {"left": {"type": "classification"}}}, r"^tasks\.left\.type: declaring"),
        ({"tasks": {"middle": {"focal_gamma": 1}}}, r"^tasks\.middle: multi-mnist has no task"),
        ({"tasks": {"focal_gamma": -1}}, r"^tasks\.focal_gamma: "),
        ({"tasks": {"instance_weights": "focal"}}, r"^tasks\.instance_weights: must be one of"),
        ({"tasks": {"temperature": 0}}, r"^tasks\.temperature: "),
        (
            {"tasks": {"left": {"distill": {"teacher": "ema", "ema_decay": 0.9}}}},
            r"^tasks\.left\.distill\.ema_decay: one average",
        ),
        ({"eval": {"views": 3}}, r"^eval\.views: several views"),
        ({"tasks": {"left": {"weight_column": "w"}}}, r"^tasks\.left\.weight_column: declaring"),
        (
            {
                "data": {"table": "rows.csv"},
                "tasks": {
                    "plan": {
                        "type": "classification",
                        "column": "plan",
                        "weight_column": "w",
                        "instance_weights": "inverse_frequency",
                    }
                },
            },
            r"^tasks\.plan\.weight_column: .* keep one of the two",
        ),
        (
            {
                "data": {"table": "rows.csv"},
                "tasks": {"s": {"type": "regression", "column": "s", "focal_gamma": 1}},
            },
            r"^tasks\.s\.focal_gamma: only classification tasks",
        ),
        ({"eval": {"combine": "median"}}, r"^eval\.combine: "),
        ({"regularization": {"heads": {"l1": -1}}}, r"^regularization\.heads\.l1: "),
        ({"noise": {"salt_pepper": 2}}, r"^noise\.salt_pepper: "),
    ],
)
def test_bad_technique_keys_name_the_key(raw, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(raw)


def test_a_task_distill_block_overrides_only_the_keys_it_sets():
    config = parse_config(
        {
            "tasks": {
                "distill": {"teacher": "ema", "alpha": 0.3},
                "left": {"distill": {"alpha": 0.9}},
            }
        }
    )
    left = config.tasks.techniques("left")["distill"]
    right = config.tasks.techniques("right")["distill"]
    assert (left.teacher, left.alpha, right.alpha) == ("ema", 0.9, 0.3)
    assert parse_config(config.to_dict()) == config  # the resolved config re-reads as itself


def test_shared_techniques_apply_to_classification_tasks_only():
    config = parse_config(
        {"tasks": {"instance_weights": "inverse_frequency", "focal_gamma": 1.0, "temperature": 2}}
    )
    specs = [TaskSpec("left", 3), TaskSpec("spend", type="regression")]
    train = Split(torch.zeros(4, 1), {"left": TARGET, "spend": torch.randn(4)})
    left, spend = build_tasks(config, specs, train)
    assert left.focal_gamma == 1.0 and left.instance_weights is not None
    assert isinstance(spend, RegressionTask) and spend.instance_weights is None
