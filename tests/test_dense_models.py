"""Dense models and the ``multi-mnist-dense`` benchmark: output shapes per task, every sharing
architecture training on the benchmark, the benchmark seeded, cached and fingerprinted."""

from __future__ import annotations

import pytest
import torch

from mtlkit.config import ConfigError, parse_config
from mtlkit.data import TaskSpec, load_benchmark
from mtlkit.models import ARCHITECTURES, SegNet, create_backbone, create_model, task_head
from mtlkit.tasks import create_task
from mtlkit.workflows import train
from mtlkit.workflows.build import build_model, build_tasks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPECS = [
    TaskSpec("segmentation", 11, type="segmentation"),
    TaskSpec("depth", type="depth"),
    TaskSpec("normals", type="normals"),
    TaskSpec("digit", 10),
]


@pytest.mark.parametrize("sharing", ["hard", "mtan"])
def test_a_dense_model_gives_each_task_its_outputs_shape(sharing):
    """Maps at the input's resolution with C, 1 and 3 channels for segmentation, depth and
    normals; an image-level task on the same trunk gets one row of logits per image."""
    trunk = create_backbone("segnet", (1, 16, 24))
    tasks = [create_task(spec) for spec in SPECS]
    heads = {
        t.name: task_head(16, t.output_size, per_pixel=t.per_pixel, dense_features=True)
        for t in tasks
    }
    outputs = create_model(sharing, trunk, heads, (1, 16, 24))(torch.rand(2, 1, 16, 24))
    shapes = {task: tuple(output.shape) for task, output in outputs.items()}
    assert shapes == {
        "segmentation": (2, 11, 16, 24),
        "depth": (2, 1, 16, 24),
        "normals": (2, 3, 16, 24),
        "digit": (2, 10),
    }


def test_segnet_keeps_resolution_through_its_stages():
    trunk = SegNet(3, (8, 8), width=4, depth=3).eval()
    x = torch.rand(1, 3, 8, 8)
    sides = []
    for stage in trunk.stages():
        x = stage(x)
        sides.append(x.shape[-1])
    assert sides == [8, 4, 2, 1, 2, 4, 8] and x.shape[1] == 4
    with pytest.raises(ValueError, match="divisible by 8"):
        SegNet(3, (12, 8), depth=3)


def test_a_per_pixel_task_on_a_vector_trunk_is_a_config_error():
    raw = {"name": "x", "data": {"benchmark": "multi-mnist-dense"}, "model": {"backbone": "cnn"}}
    config = parse_config(raw)  # its recipe's trunk is segnet: cnn is the user's choice here
    tasks = build_tasks(config, SPECS[:1])
    with pytest.raises(ConfigError, match="model: .*segnet"):
        build_model(config, (1, 32, 32), tasks)


def test_the_benchmark_is_seeded_cached_and_fingerprinted(small_dense, fake_base_data):
    first = load_benchmark("multi-mnist-dense", seed=3, **fake_base_data.kwargs)
    cache = fake_base_data.data_dir / "benchmarks" / "multi-mnist-dense-seed3.npz"
    assert cache.is_file()
    again = load_benchmark("multi-mnist-dense", seed=3, **fake_base_data.kwargs)
    assert again.fingerprint == first.fingerprint
    for task, target in first.train.targets.items():
        assert torch.equal(again.train.targets[task], target)
    other = load_benchmark("multi-mnist-dense", seed=4, **fake_base_data.kwargs)
    assert other.fingerprint != first.fingerprint
    cut = load_benchmark("multi-mnist-dense", seed=3, limit=5, **fake_base_data.kwargs)
    assert cut.fingerprint != first.fingerprint and len(cut.train) == 5


def test_the_benchmark_targets_are_what_the_tasks_read(small_dense, fake_base_data):
    """Classes in [0, 11) or void, depths > 0 or 0 (a hole), unit normals or 0 in the same
    hole; the inputs are images in [0, 1]."""
    data = load_benchmark("multi-mnist-dense", **fake_base_data.kwargs)
    split = data.train
    assert split.inputs.shape == (24, 1, 32, 32)
    assert 0.0 <= split.inputs.min() and split.inputs.max() <= 1.0
    classes = split.targets["segmentation"]
    assert classes.dtype == torch.int64 and classes.min() >= -1 and classes.max() < 11
    depth, normals = split.targets["depth"], split.targets["normals"]
    hole = depth == 0
    assert torch.all(depth[~hole] > 0)
    norms = normals.norm(dim=1)
    # stored as float16: a unit vector's norm is 1 to within float16 rounding of each part
    assert torch.allclose(norms[~hole], torch.ones(()), atol=4 * torch.finfo(torch.float16).eps)
    assert torch.all(norms[hole] == 0)


ARCHITECTURE_RUNS = [
    (name, expert)
    for name in ARCHITECTURES
    for expert in (("mlp", "trunk") if "expert" in ARCHITECTURES.get(name).options else (None,))
]


def _dense_run(tmp_path, model: dict, **train_settings):
    config = parse_config(
        {
            "name": "dense",
            "data": {"benchmark": "multi-mnist-dense", "limit": 8},
            "model": {"backbone": "segnet", "backbone_options": {"width": 4}, **model},
            "optim": {"name": "adam", "lr": 0.01},
            "train": {"epochs": 1, "batch_size": 4, "progress": False, **train_settings},
        }
    )
    return train(config, tmp_path / "run")


@pytest.mark.parametrize(("sharing", "expert"), ARCHITECTURE_RUNS)
def test_every_architecture_trains_on_the_dense_benchmark(
    tmp_path, small_dense, offline_data, sharing, expert
):
    """A few steps of every sharing architecture on the three per-pixel tasks: finite losses,
    and a test report with every metric of every task."""
    options = {} if expert is None else {"expert": expert}
    model = {"sharing": sharing, "sharing_options": options}
    result = _dense_run(tmp_path, model)
    assert set(result.test) == {"segmentation", "depth", "normals"}
    for report in result.test.values():
        assert all(value == value for value in report.summary().values())  # no NaN


def test_mtan_trains_on_dense_tasks_in_bf16_and_channels_last(tmp_path, small_dense, offline_data):
    result = _dense_run(tmp_path, {"sharing": "mtan"}, precision="bf16", channels_last=True)
    for report in result.test.values():
        assert all(value == value for value in report.summary().values())  # no NaN
