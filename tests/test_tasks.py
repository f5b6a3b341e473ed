"""Tasks: masked losses and metrics, and the direction of their primary metric."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtlkit.tasks import ClassificationTask


def _batch(seed: int = 0, n: int = 10, classes: int = 4):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=gen, requires_grad=True)
    target = torch.randint(0, classes, (n,), generator=gen)
    return logits, target


def test_masked_loss_is_the_mean_over_the_labelled_rows_whatever_the_others_hold():
    logits, target = _batch()
    mask = torch.tensor([True, False] * 5)
    garbage = torch.where(mask, target, -7)  # unlabelled rows may hold anything
    task = ClassificationTask("t", 4, label_smoothing=0.1)
    expected = F.cross_entropy(logits[mask], target[mask], label_smoothing=0.1)
    torch.testing.assert_close(task.loss(logits, garbage, mask), expected)
    everything = torch.ones(10, dtype=torch.bool)
    torch.testing.assert_close(task.loss(logits, target, everything), task.loss(logits, target))


def test_a_batch_without_any_label_gives_a_zero_loss_still_on_the_graph():
    logits, target = _batch()
    loss = ClassificationTask("t", 4).loss(logits, target, torch.zeros(10, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_masked_rows_are_left_out_of_the_metrics():
    logits, target = _batch(n=6, classes=3)
    metrics = ClassificationTask("t", 3).metrics()
    mask = torch.tensor([True, True, False, True, False, False])
    metrics.update(logits, torch.where(mask, target, 99), mask)
    report = metrics.compute()
    assert sum(report.support) == 3
    expected = (logits.argmax(1)[mask] == target[mask]).float().mean().item()
    assert report.accuracy == pytest.approx(expected)
    with pytest.raises(ValueError, match="bool tensor"):
        metrics.update(logits, target, mask.long())


def test_the_primary_metric_sets_the_direction():
    assert ClassificationTask("t", 3).higher_is_better
    with pytest.raises(ValueError, match="no known direction"):
        ClassificationTask("t", 3, primary_metric="recall@5")
