"""Shared trunks by name: each maps a batch of inputs (N, *input_shape) to features (N, D).

Every trunk has an ``out_features`` attribute (D). :data:`BACKBONES` maps a name to a factory
``factory(input_shape, **options) -> nn.Module`` taking the per-sample input shape (``(C, H, W)``
for images, ``(D,)`` for rows of features) and, as keyword-only arguments with defaults, the
options a config may set (every built-in trunk: ``batch_norm``; ``mlp`` also ``hidden``,
``activation``, ``dropout``; :func:`backbone_options` reads them off the signature).

With ``batch_norm``, the running statistics are updated by every batch that goes through the
trunk in training mode: in multi-input training (and with per-task input noise) each task's batch
goes through it on its own, so the statistics see every task's batches.

A new trunk is a class (or function) plus one ``register`` line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from math import prod
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from mtlkit.models.groups import trunk_stages
from mtlkit.registry import Registry, check_option_names

BackboneFactory = Callable[..., nn.Module]

BACKBONES: Registry[BackboneFactory] = Registry("backbone")
"""Backbone name → ``factory(input_shape, **options)``."""

ACTIVATIONS: Mapping[str, type[nn.Module]] = MappingProxyType(
    {
        "relu": nn.ReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "tanh": nn.Tanh,
        "leaky_relu": nn.LeakyReLU,
        "elu": nn.ELU,
    }
)
"""The activations an :class:`MLP` can use, by name."""


def _normalised(layer: nn.Conv2d | nn.Linear, batch_norm: bool) -> list[nn.Module]:
    """``layer``, followed by batch normalisation of its outputs when asked (the layer's bias is
    then dropped: the normalisation's shift replaces it)."""
    if not batch_norm:
        return [layer]
    layer.register_parameter("bias", None)
    if isinstance(layer, nn.Conv2d):
        return [layer, nn.BatchNorm2d(layer.out_channels)]
    return [layer, nn.BatchNorm1d(layer.out_features)]


def _sequential_stages(trunk: nn.Sequential) -> list[nn.Module]:
    """The stages of a sequential trunk, cut as its layer groups are (before each weighted
    layer, :func:`~mtlkit.models.groups.trunk_stages`), each the trunk's own modules."""
    return [nn.Sequential(*stage) for stage in trunk_stages(trunk)]


class SeedCNN(nn.Sequential):
    """The small CNN of the seed experiments: conv 32 → pool → conv 64 → pool → fc 256.

    Each max-pool comes before its ReLU: the two commute (ReLU is monotone, so the maximum of
    rectified values is the rectified maximum, and both route the gradient to the same element),
    and the ReLU then runs on a quarter of the values.

    Args:
        in_channels: the images' channels.
        image_size: (height, width), each at least 4.
        batch_norm: normalise each conv's and the fc layer's outputs over the batch.
        fc: end with the fully connected 256-unit layer; ``False`` ends at the flattened maps
            of the second pooling (64·⌊H/4⌋·⌊W/4⌋ features) and leaves the fully connected
            layer to each task's head (``model.head_hidden``), so that the tasks share only
            the convolutions.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        *,
        batch_norm: bool = False,
        fc: bool = True,
    ) -> None:
        h, w = image_size
        if h < 4 or w < 4:
            raise ValueError(f"the seed CNN needs images of at least 4×4 pixels, got {h}×{w}.")
        convolutions = [
            *_normalised(nn.Conv2d(in_channels, 32, 3, padding=1), batch_norm),
            nn.MaxPool2d(2),
            nn.ReLU(),
            *_normalised(nn.Conv2d(32, 64, 3, padding=1), batch_norm),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
        ]
        flat = 64 * (h // 4) * (w // 4)
        top = [*_normalised(nn.Linear(flat, 256), batch_norm), nn.ReLU()] if fc else []
        super().__init__(*convolutions, *top)
        self.out_features = 256 if fc else flat

    def stages(self) -> list[nn.Module]:
        """Its layer groups' stages, one per weighted layer (:mod:`~mtlkit.models.stages`)."""
        return _sequential_stages(self)


class LeNet(nn.Sequential):
    """The LeNet trunk of Sener & Koltun (2018): conv5 10 → pool → conv5 20 → pool → fc 50.

    Args:
        in_channels: the images' channels.
        image_size: (height, width), each at least 16.
        batch_norm: normalise each conv's and the fc layer's outputs over the batch.
        fc: end with the fully connected 256-unit layer; ``False`` ends at the flattened maps
            of the second pooling (64·⌊H/4⌋·⌊W/4⌋ features) and leaves the fully connected
            layer to each task's head (``model.head_hidden``), so that the tasks share only
            the convolutions.
    """

    def __init__(
        self, in_channels: int, image_size: tuple[int, int], *, batch_norm: bool = False
    ) -> None:
        h, w = image_size
        flat_h, flat_w = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        if flat_h < 1 or flat_w < 1:
            raise ValueError(f"LeNet needs images of at least 16×16 pixels, got {h}×{w}.")
        super().__init__(
            *_normalised(nn.Conv2d(in_channels, 10, 5), batch_norm),
            nn.MaxPool2d(2),
            nn.ReLU(),
            *_normalised(nn.Conv2d(10, 20, 5), batch_norm),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            *_normalised(nn.Linear(20 * flat_h * flat_w, 50), batch_norm),
            nn.ReLU(),
        )
        self.out_features = 50

    def stages(self) -> list[nn.Module]:
        """Its layer groups' stages, one per weighted layer (:mod:`~mtlkit.models.stages`)."""
        return _sequential_stages(self)


class MLP(nn.Sequential):
    """A multi-layer perceptron on flattened inputs (images or rows of features).

    Each hidden layer is ``Linear`` → (``BatchNorm1d``) → activation → (``Dropout``).

    Args:
        in_features: the number of input values per sample (C·H·W for images).
        hidden: the widths of the hidden layers, first to last (at least one).
        activation: a name of :data:`ACTIVATIONS`.
        dropout: the dropout probability after each activation, in [0, 1).
        batch_norm: normalise each hidden layer's pre-activations over the batch.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128, 128),
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        widths = [int(width) for width in hidden]
        if not widths or any(width < 1 for width in widths):
            raise ValueError(f"hidden must be one or more positive widths, got {list(hidden)}.")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of: {', '.join(ACTIVATIONS)}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        layers: list[nn.Module] = [nn.Flatten()]
        for width in widths:
            layers.append(nn.Linear(in_features, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            in_features = width
        super().__init__(*layers)
        self.out_features = widths[-1]

    def stages(self) -> list[nn.Module]:
        """Its layer groups' stages, one per weighted layer (:mod:`~mtlkit.models.stages`)."""
        return _sequential_stages(self)


def _mlp(
    input_shape: tuple[int, ...],
    *,
    hidden: Sequence[int] = (128, 128),
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> MLP:
    return MLP(
        prod(input_shape), hidden, activation=activation, dropout=dropout, batch_norm=batch_norm
    )


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, tuple[int, int]]:
    """``(channels, (height, width))`` of a ``(C, H, W)`` input shape, or a clear error."""
    if len(input_shape) != 3:
        raise ValueError(
            f"backbone {name!r} reads images of shape (C, H, W); the inputs have shape "
            f"{input_shape}. Use backbone 'mlp' for rows of features."
        )
    channels, height, width = input_shape
    return channels, (height, width)


def _cnn(input_shape: tuple[int, ...], *, batch_norm: bool = False, fc: bool = True) -> SeedCNN:
    return SeedCNN(*_image_shape("cnn", input_shape), batch_norm=batch_norm, fc=fc)


def _lenet(input_shape: tuple[int, ...], *, batch_norm: bool = False) -> LeNet:
    return LeNet(*_image_shape("lenet", input_shape), batch_norm=batch_norm)


BACKBONES.register("cnn", _cnn)
BACKBONES.register("lenet", _lenet)
BACKBONES.register("mlp", _mlp)


def backbone_options(name: str) -> dict[str, Any]:
    """The options backbone ``name`` takes, with their defaults (``batch_norm`` for ``cnn`` and
    ``lenet``).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    factory = BACKBONES.get(name)  # UnknownNameError (a ValueError) lists the known names
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(factory).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def create_backbone(name: str, input_shape: Sequence[int], **options: Any) -> nn.Module:
    """Create the trunk registered as ``name`` for inputs of per-sample shape ``input_shape``.

    The trunk runs once on a zero input here (in eval mode, so no statistic moves), so that a
    shape it cannot take fails now, not in the middle of training.

    Raises:
        ValueError: unknown name (the message lists the known ones), an option the trunk does
            not take or a bad option value, or inputs the trunk cannot read.
    """
    shape = tuple(int(n) for n in input_shape)
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"input_shape must be non-empty positive sizes, got {tuple(input_shape)}.")
    known = backbone_options(name)
    check_option_names(f"backbone {name!r}", options, known)
    trunk = BACKBONES.get(name)(shape, **options)
    trunk.eval()
    with torch.no_grad():
        trunk(torch.zeros(1, *shape))
    return trunk.train()
