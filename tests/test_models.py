"""Trunks, heads and hard sharing."""

import pytest
import torch

from mtlkit.models import BACKBONES, HardSharing, classification_head, create_backbone


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("size", [(28, 28), (36, 36)])
def test_every_trunk_maps_images_to_its_declared_feature_width(name, size):
    trunk = create_backbone(name, (1, *size))
    assert trunk(torch.zeros(3, 1, *size)).shape == (3, trunk.out_features)


def test_unknown_backbone_and_too_small_images_are_refused():
    with pytest.raises(ValueError, match="unknown backbone 'resnet'; choose one of"):
        create_backbone("resnet", (1, 28, 28))
    with pytest.raises(ValueError, match="at least 16×16"):
        create_backbone("lenet", (1, 12, 12))


def test_hard_sharing_partitions_parameters_into_shared_and_per_task():
    trunk = create_backbone("lenet", (1, 28, 28))
    heads = {"a": classification_head(50, 10), "b": classification_head(50, 3, hidden=50)}
    model = HardSharing(trunk, heads)
    shared = {id(p) for p in model.shared_parameters()}
    per_task = {t: {id(p) for p in model.task_parameters(t)} for t in ("a", "b")}
    everything = {id(p) for p in model.parameters()}
    assert shared | per_task["a"] | per_task["b"] == everything
    assert not (shared & per_task["a"]) and not (per_task["a"] & per_task["b"])
    outputs = model(torch.zeros(2, 1, 28, 28))
    assert outputs["a"].shape == (2, 10) and outputs["b"].shape == (2, 3)
    with pytest.raises(KeyError, match="no task 'c'"):
        model.task_parameters("c")
