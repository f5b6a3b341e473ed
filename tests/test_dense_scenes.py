"""The NYUv2 and Cityscapes loaders read a tiny set generated in the published ``.npy`` layout
and refuse a wrong one (exit status 2 from the command line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtlkit.cli.main import main
from mtlkit.data import InputError, load_benchmark

HEIGHT, WIDTH = 8, 12


def _write_set(root: Path, folders: dict[str, tuple[int, ...]], sizes=(3, 2), label="label"):
    """Scenes i = 0..N-1 in ``root/{train,val}/<folder>/<i>.npy``; returns what was written."""
    rng = np.random.default_rng(0)
    written: dict[str, list[np.ndarray]] = {}
    for split, size in zip(("train", "val"), sizes):
        for folder, shape in folders.items():
            for i in range(size):
                if folder == "label":
                    array = rng.integers(-1, 7, size=shape).astype(np.float32)
                else:
                    array = rng.random(shape, dtype=np.float32)
                name = label if folder == "label" else folder
                path = root / split / name / f"{i}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, array)
                written.setdefault(f"{split}/{folder}", []).append(array)
    return written


NYU_FOLDERS = {
    "image": (HEIGHT, WIDTH, 3),
    "label": (HEIGHT, WIDTH),
    "depth": (HEIGHT, WIDTH, 1),
    "normal": (HEIGHT, WIDTH, 3),
}


def test_nyuv2_is_read_channels_first_with_val_as_the_test_split(tmp_path):
    written = _write_set(tmp_path / "nyuv2", NYU_FOLDERS)
    data = load_benchmark("nyuv2", data_dir=tmp_path, quiet=True)
    assert [(s.name, s.type, s.num_classes) for s in data.tasks] == [
        ("segmentation", "segmentation", 13),
        ("depth", "depth", None),
        ("normals", "normals", None),
    ]
    assert data.input_shape == (3, HEIGHT, WIDTH)
    assert len(data.train) == 3 and len(data.test) == 2
    test = data.test
    assert torch.equal(test.inputs[1], torch.from_numpy(written["val/image"][1]).permute(2, 0, 1))
    assert torch.equal(
        test.targets["segmentation"][0], torch.from_numpy(written["val/label"][0]).long()
    )
    assert torch.equal(test.targets["depth"][0], torch.from_numpy(written["val/depth"][0][..., 0]))
    assert torch.equal(
        test.targets["normals"][0], torch.from_numpy(written["val/normal"][0]).permute(2, 0, 1)
    )
    again = load_benchmark("nyuv2", data_dir=tmp_path, quiet=True)
    assert again.fingerprint == data.fingerprint


def test_cityscapes_reads_mtan_label_7_folders(tmp_path):
    folders = {k: v for k, v in NYU_FOLDERS.items() if k != "normal"}
    _write_set(tmp_path / "cityscapes", folders, label="label_7")
    data = load_benchmark("cityscapes", data_dir=tmp_path, val_fraction=1 / 3, quiet=True)
    assert [spec.name for spec in data.tasks] == ["segmentation", "depth"]
    assert data.tasks[0].num_classes == 7
    assert (len(data.train), len(data.val), len(data.test)) == (2, 1, 2)


def test_a_missing_set_names_the_layout(tmp_path):
    with pytest.raises(InputError, match=r"nyuv2/\{train,val\}/\{image\|label\|depth\|normal\}"):
        load_benchmark("nyuv2", data_dir=tmp_path, quiet=True)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "val/normal/0.npy").unlink(), "0.npy is missing"),
        (
            lambda root: np.save(root / "train/depth/0.npy", np.zeros((HEIGHT, WIDTH, 2))),
            r"expected \(H, W, 1\)",
        ),
        (
            lambda root: np.save(root / "train/label/2.npy", np.full((HEIGHT, WIDTH), 13.0)),
            "label 13",
        ),
        (lambda root: np.save(root / "train/image/0.npy", np.zeros((4, 4, 3))), "one resolution"),
    ],
)
def test_a_wrong_set_is_refused_with_what_is_wrong(tmp_path, damage, message):
    root = tmp_path / "nyuv2"
    _write_set(root, NYU_FOLDERS)
    damage(root)
    with pytest.raises(InputError, match=message):
        load_benchmark("nyuv2", data_dir=tmp_path, quiet=True)


def test_the_command_line_refuses_a_wrong_set_with_exit_status_2(tmp_path, capsys):
    root = tmp_path / "nyuv2"
    _write_set(root, NYU_FOLDERS)
    (root / "train/depth/1.npy").unlink()
    config = tmp_path / "nyu.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "nyu",
                "data": {"benchmark": "nyuv2", "data_dir": str(tmp_path), "val_fraction": 0},
                "model": {"backbone": "segnet"},
            }
        )
    )
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "1.npy is missing" in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.json").exists()
