"""Networks for multi-task learning: shared trunks, task heads, sharing architectures."""

from mtlkit.models.backbones import BACKBONES, MLP, LeNet, SeedCNN, create_backbone
from mtlkit.models.heads import classification_head
from mtlkit.models.sharing import HardSharing, MultiTaskModel

__all__ = [
    "BACKBONES",
    "HardSharing",
    "LeNet",
    "MLP",
    "MultiTaskModel",
    "SeedCNN",
    "classification_head",
    "create_backbone",
]
