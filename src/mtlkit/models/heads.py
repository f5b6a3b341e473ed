"""Task heads: small networks that read the shared features and predict one task."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def classification_head(
    in_features: int, num_classes: int, hidden: int | None = None, *, batch_norm: bool = False
) -> nn.Module:
    """A linear classifier, or a one-hidden-layer MLP when ``hidden`` is given (Sener's heads);
    with ``batch_norm``, the hidden layer's outputs are normalised over the batch (its bias then
    dropped: the normalisation's shift replaces it).

    Raises:
        ValueError: ``batch_norm`` without a hidden layer to normalise.
    """
    if hidden is None:
        if batch_norm:
            raise ValueError(
                "batch_norm normalises the head's hidden layer, and there is none: give it a "
                "hidden width (model.head_hidden in a config)."
            )
        return nn.Linear(in_features, num_classes)
    # Built bias-free: backbones' _normalised would draw a bias from the RNG and then drop it.
    if batch_norm:
        layer = [nn.Linear(in_features, hidden, bias=False), nn.BatchNorm1d(hidden)]
    else:
        layer = [nn.Linear(in_features, hidden)]
    return nn.Sequential(*layer, nn.ReLU(), nn.Linear(hidden, num_classes))


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


def dense_head(
    in_channels: int, out_channels: int, hidden: int | None = None, *, batch_norm: bool = False
) -> nn.Module:
    """A per-pixel head on feature maps: a 3×3 convolution to ``hidden`` channels (default
    ``in_channels``), a ReLU and a 1×1 convolution to ``out_channels`` (MTAN's decoder heads);
    with ``batch_norm``, the 3×3 convolution's outputs are normalised over the batch."""
    width = in_channels if hidden is None else hidden
    if batch_norm:
        layer = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)]
    else:
        layer = [nn.Conv2d(in_channels, width, 3, padding=1)]
    return nn.Sequential(*layer, nn.ReLU(), nn.Conv2d(width, out_channels, 1))


def task_head(
    in_features: int,
    output_size: int,
    hidden: int | None = None,
    *,
    per_pixel: bool = False,
    dense_features: bool = False,
    batch_norm: bool = False,
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
        batch_norm: normalise the head's hidden layer over the batch.

    Raises:
        ValueError: a per-pixel task on a trunk that gives feature vectors; ``batch_norm`` on a
            classification head without a hidden layer.
    """
    if per_pixel and not dense_features:
        raise ValueError(
            "a per-pixel task needs a dense backbone, whose features are maps at the input's "
            "resolution; the backbone gives one feature vector per input. Use model.backbone: "
            "segnet."
        )
    if per_pixel:
        return dense_head(in_features, output_size, hidden, batch_norm=batch_norm)
    head = classification_head(in_features, output_size, hidden, batch_norm=batch_norm)
    if dense_features:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
    return head
