"""Task heads: small networks that read the shared features and predict one task."""

from __future__ import annotations

from torch import nn


def classification_head(in_features: int, num_classes: int, hidden: int | None = None) -> nn.Module:
    """A linear classifier, or a one-hidden-layer MLP when ``hidden`` is given (Sener's heads)."""
    if hidden is None:
        return nn.Linear(in_features, num_classes)
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
