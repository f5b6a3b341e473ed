"""Networks for multi-task learning: shared trunks, task heads, sharing architectures."""

from mtlkit.models.backbones import (
    ACTIVATIONS,
    BACKBONES,
    MLP,
    LeNet,
    SeedCNN,
    backbone_options,
    create_backbone,
)
from mtlkit.models.groups import (
    HEADS,
    GroupFreezer,
    LayerGroups,
    check_group_names,
    group_parameters,
    layer_groups,
    trunk_stages,
)
from mtlkit.models.heads import TemperatureScaled, classification_head
from mtlkit.models.sharing import Features, HardSharing, Inputs, MultiTaskModel

__all__ = [
    "ACTIVATIONS",
    "BACKBONES",
    "Features",
    "GroupFreezer",
    "HEADS",
    "LayerGroups",
    "Inputs",
    "HardSharing",
    "LeNet",
    "MLP",
    "MultiTaskModel",
    "SeedCNN",
    "TemperatureScaled",
    "backbone_options",
    "check_group_names",
    "classification_head",
    "create_backbone",
    "group_parameters",
    "layer_groups",
    "trunk_stages",
]
