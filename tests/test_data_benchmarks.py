"""Multi-task benchmarks built from tiny fake base datasets."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mtlkit.data import DataError, list_benchmarks, load_base, load_benchmark
from mtlkit.data.benchmarks.compose import pareto_images, sener_images


def _load(fake, name="multi-mnist", **options):
    return load_benchmark(name, **{**fake.kwargs, **options})


def _base(fake, dataset, split):
    return load_base(
        fake.specs[dataset], split, fake.data_dir, system_root=fake.system_root, quiet=True
    )


def _as_uint8(inputs: torch.Tensor) -> np.ndarray:
    return (inputs[:, 0] * 255).round().to(torch.uint8).numpy()


def _arrays(split):
    return [split.inputs.numpy(), *(target.numpy() for target in split.targets.values())]


def _pareto_partners(composed: np.ndarray, top_left: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Indices of the pool items that, at some shifts, compose ``composed`` with ``top_left``."""
    shifts = np.stack(np.meshgrid(*[np.arange(5)] * 4, indexing="ij"), -1).reshape(-1, 4)
    items = np.repeat(pool, len(shifts), axis=0)
    tops = np.repeat(top_left[None], len(items), axis=0)
    candidates = pareto_images(tops, items, np.tile(shifts, (len(pool), 1)))
    found = (candidates == composed).all(axis=(1, 2)).reshape(len(pool), len(shifts))
    return np.flatnonzero(found.any(axis=1))


def test_list_benchmarks():
    benchmarks = list_benchmarks()
    assert list(benchmarks) == [
        "multi-mnist",
        "multi-fashion",
        "multi-fashion-mnist",
        "mnist+fashion",
        "synthetic-correlation",
        "gradnorm-toy",
        "multi-mnist-dense",
        "nyuv2",
        "cityscapes",
    ]
    assert all(description for description in benchmarks.values())


@pytest.mark.slow
def test_sener_multi_mnist(fake_base_data):
    data = _load(fake_base_data, protocol="sener")
    assert (data.name, data.protocol, data.val) == ("multi-mnist", "sener", None)
    assert [(t.name, t.num_classes) for t in data.tasks] == [("left", 10), ("right", 10)]
    assert data.train.inputs.shape == (50, 1, 28, 28) and data.test.inputs.shape == (20, 1, 28, 28)
    assert data.train.inputs.dtype == torch.float32
    assert data.train.inputs.min() >= 0 and data.train.inputs.max() <= 1
    for split in ("train", "test"):
        images, labels = _base(fake_base_data, "mnist", split)
        got = getattr(data, split)
        assert got.targets["left"].dtype == torch.int64
        np.testing.assert_array_equal(got.targets["left"].numpy(), labels)
        # Sample i is image i overlaid with a partner j of the same split, labelled j's class.
        composed = _as_uint8(got.inputs)
        for i in range(5):
            candidates = sener_images(np.repeat(images[i : i + 1], len(images), 0), images)
            matches = np.flatnonzero((candidates == composed[i]).all(axis=(1, 2)))
            assert got.targets["right"][i].item() in labels[matches]


@pytest.mark.slow
def test_pareto_same_dataset_has_distinct_classes(fake_base_data):
    for name, dataset in (("multi-mnist", "mnist"), ("multi-fashion", "fashion-mnist")):
        data = _load(fake_base_data, name, protocol="pareto", seed=3)
        images, labels = _base(fake_base_data, dataset, "train")
        assert data.train.inputs.shape == (len(images), 1, 36, 36)
        assert data.test.inputs.shape[1:] == (1, 36, 36)
        np.testing.assert_array_equal(data.train.targets["left"].numpy(), labels)
        for split in (data.train, data.test):
            assert (split.targets["left"] != split.targets["right"]).all()


@pytest.mark.slow
def test_pareto_multi_fashion_mnist_takes_one_item_from_each(fake_base_data):
    data = _load(fake_base_data, "multi-fashion-mnist", protocol="pareto")
    mnist_images, mnist_labels = _base(fake_base_data, "mnist", "test")
    fashion_images, fashion_labels = _base(fake_base_data, "fashion-mnist", "test")
    assert len(data.test) == len(mnist_images) == 20
    np.testing.assert_array_equal(data.test.targets["left"].numpy(), mnist_labels)
    composed = _as_uint8(data.test.inputs)
    for i in range(3):
        partners = _pareto_partners(composed[i], mnist_images[i], fashion_images)
        assert data.test.targets["right"][i].item() in fashion_labels[partners]


@pytest.mark.slow
def test_same_seed_same_data_different_seed_different(fake_base_data, tmp_path):
    first = _load(fake_base_data, protocol="pareto", seed=1)
    fresh = dataclasses.replace(fake_base_data, data_dir=tmp_path / "other")
    for dataset in ("mnist", "fashion-mnist"):
        (fresh.data_dir / dataset).mkdir(parents=True)
        for path in (fake_base_data.data_dir / dataset).glob("*.gz"):
            (fresh.data_dir / dataset / path.name).write_bytes(path.read_bytes())
    again = _load(fresh, protocol="pareto", seed=1)  # regenerated from scratch, not cached
    assert again.fingerprint == first.fingerprint
    for split in ("train", "test"):
        pairs = zip(_arrays(getattr(first, split)), _arrays(getattr(again, split)), strict=True)
        for a, b in pairs:
            np.testing.assert_array_equal(a, b)
    other = _load(fake_base_data, protocol="pareto", seed=2)
    assert other.fingerprint != first.fingerprint
    assert not torch.equal(other.train.inputs, first.train.inputs)


def test_cache_hit_returns_the_same(fake_base_data, capsys):
    kwargs = {**fake_base_data.kwargs, "quiet": False}
    first = load_benchmark("multi-mnist", **kwargs)
    assert "building multi-mnist" in capsys.readouterr().err
    cache = fake_base_data.data_dir / "benchmarks" / "multi-mnist-sener-seed0.npz"
    record = json.loads(cache.with_suffix(".json").read_text())
    assert record["fingerprint"] == first.fingerprint
    assert record["recipe"]["seed"] == 0 and record["recipe"]["protocol"] == "sener"
    second = load_benchmark("multi-mnist", **kwargs)
    assert capsys.readouterr().err == ""
    assert second.fingerprint == first.fingerprint
    assert torch.equal(second.train.inputs, first.train.inputs)


@pytest.mark.slow
def test_tampered_cache_is_rebuilt(fake_base_data, capsys):
    first = _load(fake_base_data)
    cache = fake_base_data.data_dir / "benchmarks" / "multi-mnist-sener-seed0.npz"
    with np.load(cache) as stored:
        arrays = {key: stored[key] for key in stored.files}
    arrays["train.left"] = (arrays["train.left"] + 1) % 10
    with cache.open("wb") as stream:
        np.savez(stream, **arrays)
    again = load_benchmark("multi-mnist", **{**fake_base_data.kwargs, "quiet": False})
    assert "does not match its fingerprint" in capsys.readouterr().err
    assert again.fingerprint == first.fingerprint
    assert torch.equal(again.train.targets["left"], first.train.targets["left"])

    cache.write_bytes(b"not a zip file")
    assert _load(fake_base_data).fingerprint == first.fingerprint


@pytest.mark.slow
def test_cache_of_other_base_data_is_not_reused(fake_base_data, make_fake_dataset, tmp_path):
    first = _load(fake_base_data)
    other_mnist = make_fake_dataset(tmp_path / "elsewhere", "mnist", seed=9)
    for path in (tmp_path / "elsewhere" / "mnist").glob("*.gz"):
        (fake_base_data.data_dir / "mnist" / path.name).write_bytes(path.read_bytes())
    other = dataclasses.replace(
        fake_base_data, specs={**fake_base_data.specs, "mnist": other_mnist}
    )
    assert _load(other).fingerprint != first.fingerprint


@pytest.mark.slow
def test_validation_split_and_limit(fake_base_data):
    full = _load(fake_base_data)
    data = _load(fake_base_data, val_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 20)
    assert data.fingerprint != full.fingerprint
    rows = {row.tobytes() for row in full.train.inputs.numpy()}
    train_rows = {row.tobytes() for row in data.train.inputs.numpy()}
    val_rows = {row.tobytes() for row in data.val.inputs.numpy()}
    assert train_rows | val_rows == rows and not train_rows & val_rows
    assert _load(fake_base_data, val_fraction=0.2).fingerprint == data.fingerprint
    other_seed = _load(fake_base_data, val_fraction=0.2, seed=1)
    assert other_seed.fingerprint != data.fingerprint

    limited = _load(fake_base_data, val_fraction=0.2, limit=7)
    assert (len(limited.train), len(limited.val), len(limited.test)) == (7, 7, 7)
    assert torch.equal(limited.train.inputs, data.train.inputs[:7])
    assert torch.equal(limited.test.targets["right"], full.test.targets["right"][:7])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("multi-cifar", {}, "unknown benchmark 'multi-cifar'"),
        ("multi-fashion", {"protocol": "sener"}, "protocol 'sener' is not defined"),
        ("multi-fashion-mnist", {"protocol": "sener"}, "Use one of: pareto"),
        ("multi-mnist", {"val_fraction": 1.0}, "val_fraction must be in"),
        ("multi-mnist", {"val_fraction": 0.001}, "both must be non-empty"),
        ("multi-mnist", {"limit": 0}, "limit must be a positive integer"),
        ("multi-mnist", {"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_requests(fake_base_data, name, options, message):
    with pytest.raises(DataError, match=message):
        _load(fake_base_data, name, **options)


def test_split_subset(fake_base_data):
    data = _load(fake_base_data)
    right_only = data.train.subset(["right"])
    assert list(right_only.targets) == ["right"]
    assert right_only.inputs is data.train.inputs and len(right_only) == 50
    with pytest.raises(DataError, match="unknown task"):
        data.train.subset(["middle"])
