"""The per-pixel task types: losses and metrics against hand-computed examples, invalid pixels,
and the direction of every metric in Δm%."""

from __future__ import annotations

import math

import pytest
import torch

from mtlkit.data import TaskSpec
from mtlkit.evaluation import compare_reports, delta_m
from mtlkit.tasks import (
    IGNORE_INDEX,
    DepthReport,
    DepthTask,
    NormalsReport,
    NormalsTask,
    SegmentationReport,
    SegmentationTask,
    create_task,
    delta_m_metrics,
    higher_is_better,
)
from mtlkit.tasks.normals import BIN_DEGREES

FLOAT32_EPS = torch.finfo(torch.float32).eps


def _one_hot_logits(classes: list[list[int]], num_classes: int) -> torch.Tensor:
    """(1, C, H, W) logits whose argmax is ``classes`` (negative entries: class 0)."""
    index = torch.tensor(classes).clamp(min=0)
    return torch.nn.functional.one_hot(index, num_classes).permute(2, 0, 1)[None].float()


def test_miou_leaves_out_a_class_absent_from_targets_and_predictions():
    """Targets [[0,0,1],[1,void,1]], predictions [[0,1,1],[1,0,3]], 4 classes: class 0 has
    TP 1, FN 1 (IoU 1/2); class 1 TP 2, FP 1, FN 1 (IoU 1/2); class 3 is predicted only (IoU 0);
    class 2 occurs nowhere and is left out: mIoU = (1/2 + 1/2 + 0) / 3; the void pixel counts in
    nothing; pixel accuracy 3/5."""
    target = torch.tensor([[[0, 0, 1], [1, IGNORE_INDEX, 1]]])
    output = _one_hot_logits([[0, 1, 1], [1, 0, 3]], 4)
    metrics = SegmentationTask("seg", 4).metrics()
    metrics.update(output, target)
    report = metrics.compute()
    assert report.miou == pytest.approx(1 / 3, abs=1e-12)
    assert report.pixel_accuracy == pytest.approx(3 / 5, abs=1e-12)
    assert math.isnan(report.iou[2]) and report.iou[3] == 0.0
    assert report.num_pixels == 5 and report.num_samples == 1


def test_segmentation_metrics_skip_masked_images_and_accumulate_over_batches():
    """An image masked out of the task changes nothing; two batches give one batch's report."""
    target = torch.tensor([[[0, 1], [1, 1]], [[1, 0], [0, 0]]])
    output = _one_hot_logits([[0, 1], [0, 1]], 2).repeat(2, 1, 1, 1)
    whole = SegmentationTask("seg", 2).metrics()
    whole.update(output, target)
    halves = SegmentationTask("seg", 2).metrics()
    halves.update(output[:1], target[:1])
    halves.update(output[1:], target[1:])
    assert halves.compute() == whole.compute()
    masked = SegmentationTask("seg", 2).metrics()
    masked.update(output, target, torch.tensor([True, False]))
    first = SegmentationTask("seg", 2).metrics()
    first.update(output[:1], target[:1])
    assert masked.compute() == first.compute()


def test_segmentation_loss_is_the_cross_entropy_over_non_void_pixels():
    """Zero logits over C classes: −log(1/C) at every scored pixel, whatever the void pixels'
    logits, and no gradient reaches a void pixel."""
    task = SegmentationTask("seg", 5)
    output = torch.zeros(2, 5, 2, 2, requires_grad=True)
    with torch.no_grad():
        output[0, :, 0, 0] = torch.tensor([50.0, -50.0, 0.0, 0.0, 0.0])  # a void pixel
    target = torch.tensor([[[IGNORE_INDEX, 1], [2, 3]], [[4, 0], [1, 2]]])
    loss = task.loss(output, target)
    assert loss.item() == pytest.approx(math.log(5), rel=4 * FLOAT32_EPS)
    loss.backward()
    assert torch.all(output.grad[0, :, 0, 0] == 0)


def test_segmentation_refuses_classes_outside_its_range():
    metrics = SegmentationTask("seg", 3).metrics()
    with pytest.raises(ValueError, match="outside \\[0, 3\\)"):
        metrics.update(torch.zeros(1, 3, 1, 2), torch.tensor([[[0, 255]]]))


def test_depth_errors_count_only_valid_pixels():
    """Predictions [[1, 2], [7, 4]] against depths [[2, 0], [4, NaN]]: only the two measured
    pixels count, errors 1 and 3 (relative 1/2 and 3/4): abs_err 2, rel_err 0.625."""
    output = torch.tensor([[[[1.0, 2.0], [7.0, 4.0]]]])
    target = torch.tensor([[[2.0, 0.0], [4.0, math.nan]]])
    metrics = DepthTask("depth").metrics()
    metrics.update(output, target)
    report = metrics.compute()
    assert report.abs_err == pytest.approx(2.0, abs=1e-12)
    assert report.rel_err == pytest.approx(0.625, abs=1e-12)
    assert report.num_pixels == 2


def test_depth_loss_is_the_l1_over_valid_pixels_without_gradient_elsewhere():
    output = torch.tensor([[[[1.0, 2.0], [7.0, 4.0]]]], requires_grad=True)
    target = torch.tensor([[[2.0, 0.0], [4.0, math.nan]]])
    loss = DepthTask("depth").loss(output, target)
    assert loss.item() == pytest.approx(2.0, abs=4 * FLOAT32_EPS)
    loss.backward()
    assert output.grad[0, 0].tolist() == [[-0.5, 0.0], [0.5, 0.0]]


def test_depth_accepts_targets_with_a_channel_axis():
    output = torch.tensor([[[[1.0, 3.0]]]])
    metrics = DepthTask("depth").metrics()
    metrics.update(output, torch.tensor([[[[2.0, 2.0]]]]))
    assert metrics.compute().abs_err == pytest.approx(1.0, abs=1e-12)


def _normals_at(degrees: list[float]) -> torch.Tensor:
    """(1, 3, 1, n) unnormalised vectors at the given angles from +z, in the x-z plane."""
    radians = torch.deg2rad(torch.tensor(degrees, dtype=torch.float64))
    vectors = torch.stack([3 * torch.sin(radians), 0 * radians, 3 * torch.cos(radians)])
    return vectors.float()[None, :, None, :]


def test_normal_angles_mean_median_and_shares_within_thresholds():
    """Angles 0°, 10°, 25°, 90° (a fifth pixel invalid): mean 31.25°, lower median 10° (to one
    histogram bin), 2 of 4 within 11.25° and 22.5°, 3 of 4 within 30°."""
    output = _normals_at([0.0, 10.0, 25.0, 90.0, 40.0])
    target = torch.zeros(1, 3, 1, 5)
    target[:, 2, :, :4] = 1.0  # the fifth normal is missing
    metrics = NormalsTask("normals").metrics()
    metrics.update(output, target)
    report = metrics.compute()
    # float32 acos near cos 10° is good to ~2e-5°
    assert report.mean_angle == pytest.approx(31.25, abs=1e-4)
    assert report.median_angle == pytest.approx(10.0, abs=BIN_DEGREES)
    assert (report.within_11_25, report.within_22_5, report.within_30) == (50.0, 50.0, 75.0)
    assert report.num_pixels == 4


def test_normals_loss_is_one_minus_cosine_over_valid_pixels():
    output = _normals_at([0.0, 10.0, 25.0, 90.0, 40.0]).requires_grad_()
    target = torch.zeros(1, 3, 1, 5)
    target[:, 2, :, :4] = 1.0
    loss = NormalsTask("normals").loss(output, target)
    cosines = [math.cos(math.radians(a)) for a in (0.0, 10.0, 25.0, 90.0)]
    assert loss.item() == pytest.approx(sum(1 - c for c in cosines) / 4, abs=8 * FLOAT32_EPS)
    loss.backward()
    assert torch.all(output.grad[..., 4] == 0)


def test_a_head_with_the_wrong_shape_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="dense backbone"):
        NormalsTask("normals").loss(torch.zeros(2, 3), torch.zeros(2, 3, 4, 4))


REPORTS = {
    "segmentation": lambda **v: SegmentationReport(
        **{"miou": 0.5, "pixel_accuracy": 0.8, **v}, iou=[], num_pixels=1, num_samples=1
    ),
    "depth": lambda **v: DepthReport(
        **{"abs_err": 0.5, "rel_err": 0.2, **v}, num_pixels=1, num_samples=1
    ),
    "normals": lambda **v: NormalsReport(
        **{
            "mean_angle": 20.0,
            "median_angle": 15.0,
            "within_11_25": 30.0,
            "within_22_5": 60.0,
            "within_30": 70.0,
            **v,
        },
        num_pixels=1,
        num_samples=1,
    ),
}
DIRECTIONS = {
    "miou": True,
    "pixel_accuracy": True,
    "abs_err": False,
    "rel_err": False,
    "mean_angle": False,
    "median_angle": False,
    "within_11_25": True,
    "within_22_5": True,
    "within_30": True,
}


@pytest.mark.parametrize("kind", sorted(REPORTS))
def test_delta_m_covers_every_metric_of_a_dense_task_with_its_direction(kind):
    """Δm% over a per-pixel task reads all its metrics; a multi-task model better on one
    metric alone (10% higher where higher is better, lower elsewhere) scores +10/M."""
    metrics = delta_m_metrics(create_task(TaskSpec("t", 3, type=kind)).primary_metric)
    assert set(metrics) == set(REPORTS[kind]().summary())
    baseline = REPORTS[kind]()
    for metric in metrics:
        assert higher_is_better(metric) is DIRECTIONS[metric]
        value = getattr(baseline, metric)
        better = REPORTS[kind](**{metric: value * (1.1 if DIRECTIONS[metric] else 0.9)})
        rows = compare_reports({"t": better}, {"t": baseline}, metrics)
        assert delta_m(rows) == pytest.approx(10.0 / len(metrics), rel=1e-12)


def test_delta_m_of_an_image_level_task_reads_its_primary_metric_only():
    assert delta_m_metrics("accuracy") == ("accuracy",)
    assert delta_m_metrics("rmse") == ("rmse",)
