"""The workflows on per-pixel tasks: the report's predicted maps, ``predict`` writing maps as
``.npy`` and PNG, and ``baselines`` comparing every metric of every per-pixel task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mtlkit.config import parse_config
from mtlkit.workflows import predict, train, train_with_baselines
from mtlkit.workflows.affinity import measure_affinity
from mtlkit.workflows.cells import Cell
from mtlkit.workflows.compare import _delta_m as compare_delta_m

pytestmark = pytest.mark.usefixtures("one_torch_thread", "small_dense", "offline_data")

TINY_DENSE = {
    "name": "dense",
    "data": {"benchmark": "multi-mnist-dense", "limit": 8, "val_fraction": 0.25},
    "model": {"backbone": "segnet", "backbone_options": {"width": 4}},
    "optim": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 1, "batch_size": 4, "progress": False},
}


def test_the_report_shows_maps_and_predict_writes_them(tmp_path):
    result = train(parse_config(TINY_DENSE), tmp_path / "run")
    assert result.maps is not None and set(result.maps.kinds) == {
        "segmentation",
        "depth",
        "normals",
    }
    assert "Predicted maps" in (tmp_path / "run" / "report.html").read_text()
    images = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "new.npy", images)
    out = tmp_path / "out" / "pred.csv"
    table = predict(tmp_path / "run", tmp_path / "new.npy", out, device="cpu").table
    classes = np.load(tmp_path / "out" / "pred-segmentation.npy")
    depth = np.load(tmp_path / "out" / "pred-depth.npy")
    normals = np.load(tmp_path / "out" / "pred-normals.npy")
    assert classes.shape == (3, 32, 32) and 0 <= classes.min() and classes.max() < 11
    assert depth.shape == (3, 32, 32)
    # unit normals, to float32 rounding of the normalisation
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert list(table.columns) == ["segmentation_map", "depth_map", "normals_map"]
    for column in table.columns:
        assert all((out.parent / path).is_file() for path in table[column])
    assert pd.read_csv(out).equals(table)


def test_baselines_compare_every_metric_of_every_per_pixel_task(tmp_path):
    comparison = train_with_baselines(parse_config(TINY_DENSE), tmp_path / "base", workers=1)
    measured = {(row.task, row.metric) for row in comparison.rows}
    assert measured == {
        ("segmentation", "miou"),
        ("segmentation", "pixel_accuracy"),
        ("depth", "abs_err"),
        ("depth", "rel_err"),
        ("normals", "mean_angle"),
        ("normals", "median_angle"),
        ("normals", "within_11_25"),
        ("normals", "within_22_5"),
        ("normals", "within_30"),
    }
    assert all(torch.isfinite(torch.tensor(row.relative_difference)) for row in comparison.rows)


def test_affinity_measures_every_pair_of_per_pixel_tasks(tmp_path):
    """The look-ahead affinity and the gradient cosines of the three per-pixel tasks: finite
    3×3 matrices, cosines 1 on the diagonal (to float32 rounding of a normalised dot product)."""
    result = measure_affinity(parse_config(TINY_DENSE), tmp_path / "affinity", every=1)
    assert result.tasks == ["segmentation", "depth", "normals"]
    affinity, cosine = np.array(result.affinity), np.array(result.cosine)
    assert affinity.shape == cosine.shape == (3, 3) and np.isfinite(affinity).all()
    assert np.allclose(np.diag(cosine), 1.0, atol=1e-5)


def _cell(values: dict[str, dict[str, float]], primary: dict[str, str]) -> Cell:
    metrics = {
        "test": values,
        "primary_metric": {t: {"name": m, "higher_is_better": True} for t, m in primary.items()},
    }
    return Cell(path=Path("cell"), config=None, metrics=metrics, trained=False)


def test_compare_delta_m_averages_every_metric_of_a_per_pixel_task():
    """A segmentation task (2 metrics) and a classification task (its primary metric only):
    mIoU 10 % better, pixel accuracy equal, accuracy 20 % worse: Δm% = (10 + 0 − 20) / 3."""
    primary = {"seg": "miou", "digit": "accuracy"}
    run = _cell(
        {"seg": {"miou": 0.55, "pixel_accuracy": 0.9}, "digit": {"accuracy": 0.4, "f1": 9.0}},
        primary,
    )
    seg_alone = _cell({"seg": {"miou": 0.5, "pixel_accuracy": 0.9}}, {"seg": "miou"})
    digit_alone = _cell({"digit": {"accuracy": 0.5, "f1": 1.0}}, {"digit": "accuracy"})
    assert compare_delta_m(run, [seg_alone, digit_alone]) == pytest.approx(-10 / 3, rel=1e-12)
