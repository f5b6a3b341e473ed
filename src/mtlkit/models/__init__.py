"""Networks for multi-task learning: shared trunks, task heads, sharing architectures."""

from mtlkit.models import resnet as _resnet  # noqa: F401  (registers the resnet trunk)
from mtlkit.models.architectures import (
    ARCHITECTURES,
    Architecture,
    architecture_options,
    create_model,
)
from mtlkit.models.backbones import (
    ACTIVATIONS,
    BACKBONES,
    MLP,
    LeNet,
    SeedCNN,
    backbone_options,
    create_backbone,
)
from mtlkit.models.cross_stitch import CrossStitch
from mtlkit.models.dense import SegNet, is_dense
from mtlkit.models.experts import CGC, EXPERT_KINDS, PLE, DSelectK, ExpertLevels, MMoE
from mtlkit.models.gates import DSelectGate, SoftmaxGate, smooth_step
from mtlkit.models.groups import (
    HEADS,
    GroupFreezer,
    LayerGroups,
    check_group_names,
    group_parameters,
    layer_groups,
    trunk_stages,
)
from mtlkit.models.heads import TemperatureScaled, classification_head, dense_head, task_head
from mtlkit.models.mtan import MTAN
from mtlkit.models.resnet import ResNet
from mtlkit.models.sharing import Features, HardSharing, Inputs, MultiTaskModel
from mtlkit.models.soft import SoftSharing
from mtlkit.models.stages import StagedTrunk, fresh_copy, require_stages

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "Architecture",
    "BACKBONES",
    "CGC",
    "CrossStitch",
    "DSelectGate",
    "DSelectK",
    "EXPERT_KINDS",
    "ExpertLevels",
    "Features",
    "GroupFreezer",
    "HEADS",
    "HardSharing",
    "Inputs",
    "LayerGroups",
    "LeNet",
    "MLP",
    "MMoE",
    "MTAN",
    "MultiTaskModel",
    "PLE",
    "ResNet",
    "SegNet",
    "SeedCNN",
    "SoftSharing",
    "SoftmaxGate",
    "StagedTrunk",
    "architecture_options",
    "TemperatureScaled",
    "backbone_options",
    "check_group_names",
    "classification_head",
    "create_backbone",
    "create_model",
    "dense_head",
    "is_dense",
    "task_head",
    "fresh_copy",
    "require_stages",
    "smooth_step",
    "group_parameters",
    "layer_groups",
    "trunk_stages",
]
