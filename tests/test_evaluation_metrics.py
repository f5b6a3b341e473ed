"""ClassificationMetrics / ClassificationReport against hand-computed values and torchmetrics."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassSpecificity,
)

from mtlkit.evaluation import (
    METRIC_DIRECTIONS,
    ClassificationMetrics,
    ClassificationReport,
    higher_is_better,
)

# Ten samples, three classes, written out by hand.
TARGET = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDS = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]
# Rows true, columns predicted:
#   true 0 -> predicted 0, 0, 1, 2  = [2, 1, 1]
#   true 1 -> predicted 1, 1, 0     = [1, 2, 0]
#   true 2 -> predicted 2, 2, 1     = [0, 1, 2]
# Per class (TP, FP, FN, TN): 0 -> (2, 1, 2, 5), 1 -> (2, 2, 1, 5), 2 -> (2, 1, 1, 6).
# Per-class F1 = 2TP / (2TP + FP + FN): 4/7, 4/7, 4/6.
HAND = {
    "accuracy": 6 / 10,
    "macro_accuracy": (2 / 4 + 2 / 3 + 2 / 3) / 3,
    "micro_f1": 12 / (12 + 4 + 4),
    "macro_f1": (4 / 7 + 4 / 7 + 4 / 6) / 3,
    "confusion_matrix": [[2, 1, 1], [1, 2, 0], [0, 1, 2]],
    "tpr": [2 / 4, 2 / 3, 2 / 3],
    "tnr": [5 / 6, 5 / 7, 6 / 7],
    "ppv": [2 / 3, 2 / 4, 2 / 3],
    "npv": [5 / 7, 5 / 6, 6 / 7],
    "fpr": [1 / 6, 2 / 7, 1 / 7],
    "support": [4, 3, 3],
}


def _report(preds: list[int], target: list[int], num_classes: int = 3) -> ClassificationReport:
    metrics = ClassificationMetrics(num_classes)
    metrics.update(torch.tensor(preds), torch.tensor(target))
    return metrics.compute()


def _one_hot_logits(preds: list[int], num_classes: int = 3) -> torch.Tensor:
    """Logits whose argmax is ``preds``, with noise that never changes the argmax."""
    noise = torch.rand(len(preds), num_classes, generator=torch.Generator().manual_seed(0))
    return noise + 2.0 * torch.nn.functional.one_hot(torch.tensor(preds), num_classes)


def test_hand_example_every_field() -> None:
    report = _report(PREDS, TARGET)
    assert report.num_classes == 3
    assert report.confusion_matrix == HAND["confusion_matrix"]
    assert report.support == HAND["support"]
    for name in ("accuracy", "macro_accuracy", "micro_f1", "macro_f1"):
        assert getattr(report, name) == pytest.approx(HAND[name], abs=1e-12), name
    for name in ("tpr", "tnr", "ppv", "npv", "fpr"):
        assert getattr(report, name) == pytest.approx(HAND[name], abs=1e-12), name
    summary = report.summary()
    assert math.isnan(summary.pop("ece"))  # class predictions carry no confidence
    assert summary == pytest.approx(
        {key: HAND[key] for key in ("accuracy", "macro_accuracy", "micro_f1", "macro_f1")}
    )
    encoded = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert encoded.keys() == {*HAND.keys(), "ece"}
    for name, value in HAND.items():
        assert encoded[name] == (value if name == "confusion_matrix" else pytest.approx(value))


def test_accumulating_batches_equals_one_update_and_reset_forgets() -> None:
    metrics = ClassificationMetrics(3)
    metrics.update(torch.tensor([2]), torch.tensor([1]))  # junk, removed by reset
    metrics.reset()
    for start, stop in ((0, 3), (3, 4), (4, 4), (4, 10)):
        batch = slice(start, stop)
        metrics.update(
            torch.tensor(PREDS[batch], dtype=torch.long),
            torch.tensor(TARGET[batch], dtype=torch.long),
        )
    assert metrics.compute() == _report(PREDS, TARGET)


def test_logits_and_int_predictions_agree() -> None:
    metrics = ClassificationMetrics(3)
    metrics.update(_one_hot_logits(PREDS), torch.tensor(TARGET))
    from_scores = metrics.compute()
    assert 0.0 <= from_scores.ece <= 1.0  # scores give a confidence, class indices none
    assert dataclasses.replace(from_scores, ece=math.nan) == _report(PREDS, TARGET)


def test_agrees_with_torchmetrics_on_random_batches() -> None:
    num_classes, generator = 4, torch.Generator().manual_seed(7)
    ours = ClassificationMetrics(num_classes)
    theirs = {
        "micro": MulticlassAccuracy(num_classes, average="micro"),
        "macro": MulticlassAccuracy(num_classes, average="macro"),
        "micro_f1": MulticlassF1Score(num_classes, average="micro"),
        "macro_f1": MulticlassF1Score(num_classes, average="macro"),
        "recall": MulticlassRecall(num_classes, average=None),
        "specificity": MulticlassSpecificity(num_classes, average=None),
        "precision": MulticlassPrecision(num_classes, average=None),
        "confmat": MulticlassConfusionMatrix(num_classes),
    }
    for _ in range(3):
        logits = torch.randn(40, num_classes, generator=generator)
        target = torch.randint(num_classes, (40,), generator=generator)
        ours.update(logits, target)
        for metric in theirs.values():
            metric.update(logits, target)
    report = ours.compute()
    # Every class occurs and is predicted, so no rate is undefined and the conventions agree.
    assert min(report.support) > 0 and min(map(sum, zip(*report.confusion_matrix))) > 0
    ref = {name: metric.compute() for name, metric in theirs.items()}
    assert report.confusion_matrix == ref["confmat"].tolist()
    assert report.accuracy == pytest.approx(ref["micro"].item(), abs=1e-6)
    assert report.macro_accuracy == pytest.approx(ref["macro"].item(), abs=1e-6)
    assert report.micro_f1 == pytest.approx(ref["micro_f1"].item(), abs=1e-6)
    assert report.macro_f1 == pytest.approx(ref["macro_f1"].item(), abs=1e-6)
    assert report.tpr == pytest.approx(ref["recall"].tolist(), abs=1e-6)
    assert report.tnr == pytest.approx(ref["specificity"].tolist(), abs=1e-6)
    assert report.ppv == pytest.approx(ref["precision"].tolist(), abs=1e-6)
    assert report.fpr == pytest.approx([1 - v for v in report.tnr], abs=1e-12)


def test_never_predicted_class_has_nan_ppv_and_json_null() -> None:
    # Class 2 occurs twice but is never predicted: TP = FP = 0, so PPV = 0/0.
    report = _report([0, 1, 1, 1], [0, 1, 2, 2])
    assert math.isnan(report.ppv[2])
    assert report.tpr[2] == 0.0
    assert report.ppv[:2] == [1.0, 1 / 3]
    encoded = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert encoded["ppv"] == [1.0, 1 / 3, None]


def test_absent_class_is_skipped_by_macro_averages() -> None:
    # Class 2 neither occurs nor is predicted: its TPR, PPV and F1 are undefined.
    report = _report([0, 0, 1, 1], [0, 1, 1, 1])
    assert math.isnan(report.tpr[2]) and math.isnan(report.ppv[2])
    assert report.tnr[2] == 1.0 and report.fpr[2] == 0.0 and report.support[2] == 0
    assert report.macro_accuracy == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert report.macro_f1 == pytest.approx((2 / 3 + 4 / 5) / 2)  # F1: 2/(2+1), 4/(4+1)
    assert report.to_dict()["tpr"] == [1.0, 2 / 3, None]


def test_no_samples_gives_undefined_scalars() -> None:
    report = ClassificationReport.from_confusion_matrix(torch.zeros(2, 2, dtype=torch.long))
    assert all(math.isnan(value) for value in report.summary().values())
    assert report.to_dict()["accuracy"] is None


@pytest.mark.parametrize(
    ("preds", "target", "match"),
    [
        (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), r"logits of shape \(N, 3\)"),
        (torch.zeros(4, 3, 1), torch.zeros(4, dtype=torch.long), r"logits of shape \(N, 3\)"),
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), r"logits of shape \(N, 3\)"),
        (torch.zeros(4, 1, dtype=torch.long), torch.zeros(4, dtype=torch.long), "shape \\(N,\\)"),
        (torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.long), "target must be class indices"),
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), "4 samples but target has 3"),
        (torch.zeros(4, 3), torch.zeros(4), "target must hold integer class indices"),
        (torch.tensor([0, 3]), torch.tensor([0, 1]), r"logits_or_preds .*outside \[0, 3\)"),
        (torch.tensor([0, 1]), torch.tensor([-1, 1]), r"target .*outside \[0, 3\)"),
        (torch.tensor([True, False]), torch.tensor([0, 1]), "integer class indices"),
    ],
)
def test_bad_inputs_raise_value_error(
    preds: torch.Tensor, target: torch.Tensor, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        ClassificationMetrics(3).update(preds, target)


@pytest.mark.parametrize("num_classes", [1, 0, 2.0, True])
def test_bad_num_classes(num_classes: object) -> None:
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        ClassificationMetrics(num_classes)  # type: ignore[arg-type]


def test_non_tensor_input_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="logits_or_preds must be a tensor"):
        ClassificationMetrics(3).update([0, 1], torch.tensor([0, 1]))  # type: ignore[arg-type]


def test_to_returns_self_and_inputs_must_share_its_device() -> None:
    metrics = ClassificationMetrics(3)
    assert metrics.to("cpu") is metrics
    assert metrics.device == torch.device("cpu")
    on_meta = torch.zeros(4, dtype=torch.long, device="meta")
    with pytest.raises(ValueError, match="logits_or_preds is on meta .* call .to\\(device\\)"):
        metrics.update(on_meta, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="target is on meta .* call .to\\(device\\)"):
        metrics.update(torch.zeros(4, dtype=torch.long), on_meta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    metrics = ClassificationMetrics(3).to("cuda")
    metrics.update(_one_hot_logits(PREDS).cuda(), torch.tensor(TARGET).cuda())
    assert metrics.device.type == "cuda"
    assert metrics.compute() == _report(PREDS, TARGET)


def test_directions() -> None:
    assert all(higher_is_better(name) for name in ("accuracy", "macro_f1", "tpr", "npv"))
    assert not higher_is_better("fpr") and not higher_is_better("loss")
    assert set(METRIC_DIRECTIONS) >= set(_report(PREDS, TARGET).summary())
    with pytest.raises(ValueError, match="no known direction: use one of"):
        higher_is_better("recall@5")
