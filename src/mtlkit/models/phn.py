"""Pareto HyperNetworks (Navon et al., 2021): a hypernetwork maps the preference to the
target network's weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtlkit.models.preference import PREFERENCE_MODELS, GeneratedWeights
from mtlkit.models.sharing import MultiTaskModel

__all__ = ["ParetoHyperNetwork"]


class ParetoHyperNetwork(GeneratedWeights):
    """A hypernetwork, an MLP from the preference to a ``hidden``-wide embedding and one linear
    map from it to each of the target network's parameters, generates every weight of the
    target for the preference. Trained by linear scalarisation (balancing ``ew``: PHN-LS) or
    by EPO on the preference's ray (balancing ``epo``: PHN-EPO).

    Args:
        model: the target network (its parameters give only the shapes).
        hidden: the embedding's width.
        layers: the MLP's hidden layers (each ``hidden`` wide, ReLU).
    """

    def __init__(self, model: MultiTaskModel, *, hidden: int = 100, layers: int = 2) -> None:
        super().__init__(model)
        self.check_options(hidden=hidden, layers=layers)
        blocks: list[nn.Module] = []
        width = self.num_tasks
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.embed = nn.Sequential(*blocks)
        self.names = list(self.target_shapes)
        self.outputs = nn.ModuleList(
            nn.Linear(hidden, math.prod(shape)) for shape in self.target_shapes.values()
        )
        with torch.no_grad():  # start near the target's own initialisation
            for linear, parameter in zip(self.outputs, model.parameters()):
                linear.weight.mul_(1.0 / math.sqrt(hidden))
                linear.bias.copy_(parameter.detach().flatten())

    @classmethod
    def check_options(cls, *, hidden: int = 100, layers: int = 2) -> None:
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {hidden} and {layers}.")

    def weights(self, preference: Tensor) -> dict[str, Tensor]:
        embedding = self.embed(preference.to(self.outputs[0].weight.dtype))
        return {
            name: linear(embedding).reshape(self.target_shapes[name])
            for name, linear in zip(self.names, self.outputs)
        }


PREFERENCE_MODELS.register("phn", ParetoHyperNetwork)
