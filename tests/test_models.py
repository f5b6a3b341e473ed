"""Trunks, heads and hard sharing."""

import pytest
import torch

from mtlkit.models import BACKBONES, HardSharing, classification_head, create_backbone, is_dense
from mtlkit.models.heads import dense_head


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("size", [(28, 28), (36, 36)])
def test_every_trunk_maps_images_to_its_declared_feature_width(name, size):
    """Vectors of ``out_features``, or (a dense trunk) maps of that many channels at the
    input's resolution."""
    trunk = create_backbone(name, (1, *size))
    spatial = size if is_dense(trunk) else ()
    assert trunk(torch.zeros(3, 1, *size)).shape == (3, trunk.out_features, *spatial)


def test_unknown_backbone_and_too_small_images_are_refused():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'; choose one of"):
        create_backbone("vgg", (1, 28, 28))
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


def test_resnet_width_and_depth_set_its_feature_width_and_stages():
    trunk = create_backbone("resnet", (3, 16, 16), width=8, blocks=[2, 1, 1, 1])
    assert trunk.out_features == 64 and len(trunk.stages()) == 4
    assert trunk(torch.zeros(2, 3, 16, 16)).shape == (2, 64)
    with pytest.raises(ValueError, match="blocks must be one or more positive counts"):
        create_backbone("resnet", (3, 16, 16), blocks=[])


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_trunks_stages_chain_into_its_forward_pass(name):
    trunk = create_backbone(name, (1, 28, 28)).eval()
    x = torch.rand(2, 1, 28, 28)
    chained = x
    for stage in trunk.stages():
        chained = stage(chained)
    torch.testing.assert_close(chained, trunk(x), rtol=0, atol=0)
    owned = {id(p) for p in trunk.parameters()}
    assert {id(p) for s in trunk.stages() for p in s.parameters()} == owned


def test_the_seed_cnn_without_its_fc_layer_ends_at_the_same_convolutions_flattened():
    """``fc: false`` leaves the fully connected layer to the heads: the trunk is the default
    one's convolutions (the same weights from the same seed), flattened, and nothing more."""
    torch.manual_seed(0)
    full = create_backbone("cnn", (1, 28, 28), batch_norm=True).eval()
    torch.manual_seed(0)
    convolutional = create_backbone("cnn", (1, 28, 28), batch_norm=True, fc=False).eval()
    assert full.out_features == 256 and convolutional.out_features == 64 * 7 * 7
    assert not any(isinstance(m, torch.nn.Linear) for m in convolutional.modules())
    x = torch.rand(3, 1, 28, 28)
    flatten = next(i for i, m in enumerate(full) if isinstance(m, torch.nn.Flatten))
    convolutions = torch.nn.Sequential(*list(full)[: flatten + 1])
    torch.testing.assert_close(convolutional(x), convolutions(x), rtol=0, atol=0)


def test_a_heads_batch_norm_normalises_its_hidden_layer_and_needs_one():
    head = classification_head(8, 3, hidden=4, batch_norm=True).train()
    linear, norm = head[0], head[1]
    assert linear.bias is None and isinstance(norm, torch.nn.BatchNorm1d)
    normalised = norm(linear(torch.randn(64, 8)))  # affine is the identity at initialisation
    # Each unit's batch mean is 0 up to float32 rounding of a mean of 64 values of size ~3.
    assert normalised.mean(0).abs().max() < 64 * 4 * torch.finfo(torch.float32).eps
    assert head(torch.randn(64, 8)).shape == (64, 3)
    with pytest.raises(ValueError, match=r"there is none: .*model\.head_hidden"):
        classification_head(8, 3, batch_norm=True)
    dense = dense_head(4, 2, hidden=5, batch_norm=True)
    assert dense[0].bias is None and isinstance(dense[1], torch.nn.BatchNorm2d)
