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


def dense_head(in_channels: int, out_channels: int, hidden: int | None = None) -> nn.Module:
    """A per-pixel head on feature maps: a 3×3 convolution to ``hidden`` channels (default
    ``in_channels``), a ReLU and a 1×1 convolution to ``out_channels`` (MTAN's decoder heads)."""
    width = in_channels if hidden is None else hidden
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, out_channels, 1),
    )


def task_head(
    in_features: int,
    output_size: int,
    hidden: int | None = None,
    *,
    per_pixel: bool = False,
    dense_features: bool = False,
) -> nn.Module:
    """The head of one task on a trunk's features.

    A per-pixel task on feature maps gets a :func:`dense_head`; an image-level task on feature
    maps, a :func:`classification_head` on their spatial mean; on feature vectors, a
    :func:`classification_head`.

    Args:
        in_features: the trunk's features (channels of its maps, or the vectors' width).
        output_size: the task's outputs (per pixel for a per-pixel task).
        hidden: the hidden width (``None``: the head's default).
        per_pixel: whether the task predicts a map.
        dense_features: whether the trunk gives feature maps (:func:`~mtlkit.models.is_dense`).

    Raises:
        ValueError: a per-pixel task on a trunk that gives feature vectors.
    """
    if per_pixel and not dense_features:
        raise ValueError(
            "a per-pixel task needs a dense backbone, whose features are maps at the input's "
            "resolution; the backbone gives one feature vector per input. Use model.backbone: "
            "segnet."
        )
    if per_pixel:
        return dense_head(in_features, output_size, hidden)
    head = classification_head(in_features, output_size, hidden)
    if dense_features:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    return head
