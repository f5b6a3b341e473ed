"""Task heads: small networks that read the shared features and predict one task."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def classification_head(in_features: int, num_classes: int, hidden: int | None = None) -> nn.Module:
    """A linear classifier, or a one-hidden-layer MLP when ``hidden`` is given (Sener's heads)."""
    if hidden is None:
        return nn.Linear(in_features, num_classes)
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


class TemperatureScaled(nn.Module):
    """A head whose outputs are divided by a temperature T: ``softmax(z / T)``.

    T > 1 softens the probabilities, T < 1 sharpens them; the predicted class is unchanged. T is
    a buffer (saved with the weights, not trained by the optimizer): a fixed value, or one fitted
    on validation data after training (:func:`mtlkit.training.fit_temperatures`).

    Args:
        head: the head whose logits are scaled.
        temperature: T > 0.
    """

    def __init__(self, head: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.head = head
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, features: Tensor) -> Tensor:
        return self.head(features) / self.temperature
