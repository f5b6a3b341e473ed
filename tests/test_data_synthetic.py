"""The synthetic regression benchmarks against their papers' formulas; seeded, cached,
fingerprinted, and configured through ``data.correlation`` / ``data.num_tasks``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mtlkit.config import ConfigError, parse_config
from mtlkit.data import DataError, load_benchmark
from mtlkit.data.benchmarks.synthetic import (
    CORRELATION_NOISE_STD,
    TEST_SIZE,
    TRAIN_SIZE,
    correlation_arrays,
    gradnorm_toy_arrays,
)


@pytest.mark.parametrize("p", [1.0, 0.9, 0.5, 0.0])
def test_correlation_weights_and_labels_follow_the_mmoe_paper(p):
    arrays = correlation_arrays(3, p)
    w1, w2, alpha, beta = (arrays[k] for k in ("w1", "w2", "alpha", "beta"))
    np.testing.assert_allclose([w1 @ w1, w2 @ w2, w1 @ w2], [1.0, 1.0, p], atol=1e-12)  # c = 1
    x = arrays["train.inputs"].astype(np.float64)
    for task, w in (("y1", w1), ("y2", w2)):
        z = x @ w
        clean = z + np.sin(alpha * z[:, None] + beta).sum(1)
        noise = arrays[f"train.{task}"] - clean
        # ε ~ N(0, 0.01): the sample std is within 5 standard errors (σ/√(2n)) of 0.1, once
        # float32 storage of y (|y| < 100, 8e-6 relative) is left far below that
        error = CORRELATION_NOISE_STD / np.sqrt(2 * TRAIN_SIZE)
        assert abs(noise.std() - CORRELATION_NOISE_STD) < 5 * error
        assert abs(noise.mean()) < 5 * CORRELATION_NOISE_STD / np.sqrt(TRAIN_SIZE)


@pytest.mark.slow
def test_label_correlation_falls_with_the_correlation_parameter():
    pearson = [
        np.corrcoef(*(correlation_arrays(0, p)[f"train.{t}"] for t in ("y1", "y2")))[0, 1]
        for p in (1.0, 0.9, 0.7, 0.5, 0.0)
    ]
    assert pearson == sorted(pearson, reverse=True) and pearson[0] > 0.99


@pytest.mark.slow
def test_gradnorm_toy_targets_are_the_papers_functions():
    arrays = gradnorm_toy_arrays(1, 4)
    b, eps, sigma = arrays["B"], arrays["eps"], arrays["sigma"]
    np.testing.assert_allclose(sigma, [1.0, 100 ** (1 / 3), 100 ** (2 / 3), 100.0], rtol=1e-12)
    x = arrays["test.inputs"].astype(np.float64)
    for k in range(4):
        expected = sigma[k] * np.tanh(x @ (b + eps[k]))
        # stored as float32: one rounding of a value of magnitude ≤ σₖ
        np.testing.assert_allclose(arrays[f"test.t{k + 1}"], expected, rtol=0, atol=sigma[k] * 2e-7)
    assert eps.shape == (4, 250) and b.shape == (250,)


@pytest.mark.slow
def test_benchmarks_are_seeded_cached_and_fingerprinted(tmp_path):
    def load(**options):
        return load_benchmark("synthetic-correlation", data_dir=tmp_path, quiet=True, **options)

    first = load(correlation=0.7, seed=1)
    cache = tmp_path / "benchmarks" / "synthetic-correlation-0.7-seed1.npz"
    assert cache.is_file()
    assert json.loads(cache.with_suffix(".json").read_text())["fingerprint"] == first.fingerprint
    assert load(correlation=0.7, seed=1).fingerprint == first.fingerprint
    assert load(correlation=0.7, seed=2).fingerprint != first.fingerprint
    assert load(correlation=0.5, seed=1).fingerprint != first.fingerprint
    assert len(first.train.inputs) == TRAIN_SIZE and len(first.test.inputs) == TEST_SIZE
    spec = first.tasks[0]
    assert spec.type == "regression" and spec.target_std == pytest.approx(
        float(first.train.targets["y1"].std(unbiased=False)), rel=1e-5
    )
    toy = load_benchmark("gradnorm-toy", num_tasks=3, data_dir=tmp_path, quiet=True, limit=50)
    assert [t.name for t in toy.tasks] == ["t1", "t2", "t3"]
    assert all(t.target_std == 1.0 for t in toy.tasks)  # the scales reach the losses
    with pytest.raises(DataError, match=r"correlation must be a number in \[0, 1\]"):
        load(correlation=1.5)


def test_the_config_reads_the_benchmarks_own_options():
    config = parse_config({"data": {"benchmark": "gradnorm-toy", "num_tasks": 5}})
    assert config.data.num_tasks == 5 and config.data.correlation is None
    config = parse_config({"data": {"benchmark": "synthetic-correlation"}})
    assert config.data.correlation == 1.0
    with pytest.raises(ConfigError, match="data.correlation: benchmark 'multi-mnist' does not"):
        parse_config({"data": {"correlation": 0.5}})
    with pytest.raises(ConfigError, match="tasks.include: .* t1, t2, t3"):
        parse_config(
            {"data": {"benchmark": "gradnorm-toy", "num_tasks": 3}, "tasks": {"include": ["t4"]}}
        )
