"""Every task type: its loss and metrics against values computed by hand, masked rows left out
to the last bit of gradient, predictions, the registry, and lower-is-better metrics honoured by
model selection, Δm% and the reports."""

from __future__ import annotations

import math

import pytest
import torch

from mtlkit.data import TaskSpec
from mtlkit.evaluation import compare_reports, delta_m, write_report
from mtlkit.tasks import (
    TASK_TYPES,
    BinaryTask,
    ClassificationReport,
    ClassificationTask,
    MultilabelTask,
    RegressionReport,
    RegressionTask,
    create_task,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELLED = torch.tensor([True, True, True, False, True])


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bce(logit: float, target: float) -> float:
    p = _sigmoid(logit)
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


# Binary: five rows, the fourth unlabelled. Probabilities 0.88, 0.27, 0.62, (0.05), 0.56 against
# labels 1, 0, 0, (1), 1: above 0.5, TP = 2 (rows 1, 5), FP = 1 (row 3), TN = 1, FN = 0.
# AUROC: positives score 2 and 0.25, negatives -1 and 0.5; 3 of the 4 pairs are ordered.
BINARY_LOGITS = [2.0, -1.0, 0.5, -3.0, 0.25]
BINARY_TARGET = [1.0, 0.0, 0.0, 1.0, 1.0]


def test_binary_loss_and_metrics_by_hand():
    task = BinaryTask("churn")
    logits = torch.tensor(BINARY_LOGITS).unsqueeze(1)
    target = torch.tensor(BINARY_TARGET)
    expected = sum(_bce(x, y) for x, y, m in zip(BINARY_LOGITS, BINARY_TARGET, LABELLED) if m) / 4
    # float32 BCE of O(1) values: a few ulps of 1.2e-7 each
    assert task.loss(logits, target, LABELLED).item() == pytest.approx(expected, rel=1e-6)
    metrics = task.metrics()
    metrics.update(logits[:2], target[:2], LABELLED[:2])
    metrics.update(logits[2:], target[2:], LABELLED[2:])
    report = metrics.compute()
    assert report.confusion_matrix == [[1, 1], [0, 2]]
    assert report.summary() == pytest.approx(
        {"accuracy": 3 / 4, "auroc": 3 / 4, "f1": 4 / 5, "precision": 2 / 3, "recall": 1.0}
    )
    assert task.primary_metric == "auroc" and task.higher_is_better


def test_binary_auroc_is_undefined_with_one_label():
    metrics = BinaryTask("churn").metrics()
    metrics.update(torch.tensor([[1.0], [-1.0]]), torch.tensor([1.0, 1.0]))
    assert math.isnan(metrics.compute().auroc)


# Multilabel: three labels, four rows, the last unlabelled. Predicted (logit ≥ 0) against true:
#   label 0: [1, 0, 1] vs [1, 0, 0] -> TP 1, FP 1, FN 0, F1 2/3, AP 1 (the positive ranks first)
#   label 1: [0, 1, 0] vs [0, 1, 0] -> TP 1,            F1 1,   AP 1
#   label 2: [1, 0, 1] vs [1, 1, 0] -> TP 1, FP 1, FN 1, F1 1/2; ranked 2 (neg), 1 (pos),
#            -3 (pos): AP = (1/2 + 2/3) / 2 = 7/12
# micro F1 = 2·3 / (2·3 + 2 + 1) = 2/3; macro F1 = 13/18; mAP = 31/36.
ML_LOGITS = [[2.0, -2.0, 1.0], [-1.0, 1.0, -3.0], [0.5, -0.5, 2.0], [3.0, 3.0, 3.0]]
ML_TARGET = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_multilabel_loss_and_metrics_by_hand():
    task = MultilabelTask("tags", ("a", "b", "c"))
    logits, target = torch.tensor(ML_LOGITS), torch.tensor(ML_TARGET)
    mask = torch.tensor([True, True, True, False])
    rows = [sum(_bce(x, y) for x, y in zip(xs, ys)) / 3 for xs, ys in zip(ML_LOGITS, ML_TARGET)]
    assert task.loss(logits, target, mask).item() == pytest.approx(sum(rows[:3]) / 3, rel=1e-6)
    metrics = task.metrics()
    metrics.update(logits, target, mask)
    report = metrics.compute()
    assert report.f1 == pytest.approx([2 / 3, 1.0, 1 / 2])
    # average precision from float32 probabilities: exact ratios of counts
    assert report.average_precision == pytest.approx([1.0, 1.0, 7 / 12], rel=1e-6)
    assert report.summary() == pytest.approx(
        {"micro_f1": 2 / 3, "macro_f1": 13 / 18, "map": 31 / 36}, rel=1e-6
    )
    assert report.support == [1, 1, 2] and report.num_samples == 3 and report.labels == list("abc")


# Regression: targets standardised with mean 10 and std 2. Outputs (standardised) 0.5, -1, 2,
# (0) against targets 11, 6, 20, (garbage): standardised targets 0.5, -2, 5, so the errors are
# 0, 1, -3: MSE 10/3, L1 4/3, Huber (δ = 1) (0 + 0.5 + 2.5) / 3 = 1. In target units the
# predictions are 11, 8, 14: errors 0, 2, -6, MAE 8/3, MSE 40/3; the targets' mean is 37/3,
# SST = 302/3, so R² = 1 - 40 / (302/3) = 91/151.
REG_OUTPUT = [[0.5], [-1.0], [2.0], [0.0]]
REG_TARGET = [11.0, 6.0, 20.0, float("nan")]


@pytest.mark.parametrize(("loss", "expected"), [("mse", 10 / 3), ("l1", 4 / 3), ("huber", 1.0)])
def test_regression_losses_by_hand(loss, expected):
    task = RegressionTask("spend", loss, target_mean=10.0, target_std=2.0)
    mask = torch.tensor([True, True, True, False])
    value = task.loss(torch.tensor(REG_OUTPUT), torch.tensor(REG_TARGET), mask)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_regression_metrics_by_hand_in_target_units():
    task = RegressionTask("spend", target_mean=10.0, target_std=2.0)
    metrics = task.metrics()
    metrics.update(
        torch.tensor(REG_OUTPUT), torch.tensor(REG_TARGET), torch.tensor([True, True, True, False])
    )
    report = metrics.compute()
    # float64 accumulation of float32 outputs that are exact in binary: exact up to rounding
    assert report.summary() == pytest.approx(
        {"mae": 8 / 3, "mse": 40 / 3, "rmse": math.sqrt(40 / 3), "r2": 91 / 151}, rel=1e-12
    )
    assert report.num_samples == 3
    assert task.primary_metric == "rmse" and not task.higher_is_better
    assert task.predict(torch.tensor(REG_OUTPUT[:3]))["pred"] == [11.0, 8.0, 14.0]


def _cases():
    """Per task type: the task, outputs, targets whose masked row holds garbage."""
    return [
        (ClassificationTask("plan", 3), torch.randn(5, 3), torch.tensor([0, 2, 1, 99, 1])),
        (BinaryTask("churn"), torch.randn(5, 1), torch.tensor([1.0, 0.0, 1.0, 7.0, 0.0])),
        (
            MultilabelTask("tags", ("a", "b")),
            torch.randn(5, 2),
            torch.tensor([[1.0, 0], [0, 1], [1, 1], [5, -5], [0, 0]]),
        ),
        (RegressionTask("spend"), torch.randn(5, 1), torch.tensor([1.0, 2, 3, math.nan, 4])),
    ]


@pytest.mark.parametrize(("task", "output", "target"), _cases(), ids=lambda c: type(c).__name__)
def test_masked_rows_contribute_exactly_zero_gradient(task, output, target):
    """Whatever an unlabelled row's target holds (NaN, an out-of-range class), its output gets a
    gradient of exactly 0, and the loss is the mean over the labelled rows."""
    output = output.clone().requires_grad_(True)
    loss = task.loss(output, target, LABELLED)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(output.grad[3] == 0)
    assert output.grad[LABELLED].abs().sum() > 0
    labelled = task.loss(output[LABELLED], target[LABELLED])
    assert loss.item() == pytest.approx(labelled.item(), rel=1e-6)
    none = task.loss(output, target, torch.zeros(5, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_predictions_name_classes_and_give_probabilities():
    spec = TaskSpec("plan", 3, "classification", ("basic", "plus", "premium"))
    plan = create_task(spec)
    predicted = plan.predict(torch.tensor([[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]]))
    assert predicted["pred"] == ["plus", "basic"]
    assert predicted["prob"] == pytest.approx([math.exp(5) / (math.exp(5) + 2), 1.0], rel=1e-3)
    churn = create_task(TaskSpec("churn", 2, "binary", ("no", "yes")))
    assert churn.predict(torch.tensor([[1.0], [-1.0]])) == {
        "pred": ["yes", "no"],
        "prob": pytest.approx([_sigmoid(1.0), _sigmoid(-1.0)]),
    }
    tags = create_task(TaskSpec("tags", None, "multilabel", ("a", "b")))
    assert tags.predict(torch.tensor([[1.0, 2.0], [-1.0, 2.0], [-1.0, -2.0]]))["pred"] == [
        "a|b",
        "b",
        "",
    ]


def test_the_registry_builds_every_type_and_refuses_what_it_lacks():
    assert set(TASK_TYPES) == {
        "classification",
        "binary",
        "multilabel",
        "regression",
        "segmentation",
        "depth",
        "normals",
    }
    task = create_task(TaskSpec("spend", type="regression", loss="l1"), metric="mae")
    assert isinstance(task, RegressionTask) and task.criterion == "l1"
    assert task.primary_metric == "mae"
    with pytest.raises(ValueError, match="no loss 'huber'; choose one of: bce"):
        create_task(TaskSpec("churn", 2, "binary", loss="huber"))
    with pytest.raises(ValueError, match="no metric 'rmse'"):
        create_task(TaskSpec("plan", 3), metric="rmse")
    with pytest.raises(ValueError, match="takes no option 'label_smoothing'"):
        create_task(TaskSpec("spend", type="regression"), label_smoothing=0.1)


def test_a_lower_error_is_selected_and_scaled_by_the_target_spread():
    """Model selection prefers the lower RMSE, and reads it in units of the target's standard
    deviation, so a regression in dollars averages fairly with an accuracy."""
    spend = RegressionTask("spend", target_mean=100.0, target_std=50.0)
    worse, better = (RegressionReport(0, rmse, 0, 0, 1) for rmse in (40.0, 30.0))
    assert spend.selection_value(better) > spend.selection_value(worse)
    assert spend.selection_value(better) == pytest.approx(-30.0 / 50.0)


def test_delta_m_flips_the_sign_of_a_lower_is_better_metric():
    multi = {"spend": RegressionReport(1.0, 9.0, 81.0, 0.5, 10)}
    single = {"spend": RegressionReport(1.0, 10.0, 100.0, 0.4, 10)}
    (row,) = compare_reports(multi, single, ("rmse",))
    assert not row.higher_is_better
    assert row.relative_difference == pytest.approx(10.0)  # 10 % lower error: +10 %
    assert delta_m([row]) == pytest.approx(10.0)


def test_the_report_renders_every_task_type(tmp_path):
    plan = ClassificationReport.from_confusion_matrix(torch.tensor([[2, 1], [0, 3]]))
    churn, tags = BinaryTask("churn").metrics(), MultilabelTask("tags", ("a", "b")).metrics()
    churn.update(torch.tensor([[1.0], [-1.0], [2.0]]), torch.tensor([1.0, 0.0, 0.0]))
    tags.update(torch.tensor([[1.0, -1.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    reports = {
        "plan": plan,
        "churn": churn.compute(),
        "tags": tags.compute(),
        "spend": RegressionReport(2.0, 3.0, 9.0, 0.75, 4),
    }
    text = write_report(tmp_path / "r.md", title="t", run_info={}, task_reports=reports).read_text()
    for line in (
        "| task | accuracy | macro accuracy | micro F1 | macro F1 | ECE | samples |",
        "| task  | accuracy |  AUROC |     F1 | precision | recall | samples |",
        "| churn |   0.6667 | 0.5000 | 0.6667 |    0.5000 | 1.0000 |       3 |",
        "| task | micro F1 | macro F1 |    mAP | samples |",
        "| task  |    MAE |   RMSE |    MSE |     R² | samples |",
        "| spend | 2.0000 | 3.0000 | 9.0000 | 0.7500 |       4 |",
        "| 0 (negative)     |            1 |            1 |",  # binary confusion matrix
        "| a     |         1 | 0.667 |             0.500 |",  # multilabel per-label table
    ):
        assert line in text.splitlines(), line
    assert "## Task tags" in text and "## Task spend" not in text  # nothing more to show
