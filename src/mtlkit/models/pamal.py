"""PaMaL, Pareto manifold learning (Dimitriadis et al., 2023): one weight set per task, the
network's weights their preference-weighted combination."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtlkit.models.preference import PREFERENCE_MODELS, GeneratedWeights
from mtlkit.models.sharing import MultiTaskModel

__all__ = ["ParetoManifold"]


class ParetoManifold(GeneratedWeights):
    """K copies of the network's weights (θ₁ … θ_K, one per task, each initialised on its own
    from the seed); the network for preference α has the weights Σₖ αₖθₖ, so a one-hot
    preference gives that task's own weight set. Trained by linear scalarisation.

    Args:
        model: the network (its initial weights are task 1's set).
    """

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__(model)
        self.sets = nn.ModuleList()
        for k in range(self.num_tasks):
            weight_set = nn.ParameterList()
            for module_parameter in model.parameters():
                value = module_parameter.detach().clone()
                if k > 0:  # the others: the first's values shuffled (same law, other values)
                    value = value.flatten()[torch.randperm(value.numel())].reshape(value.shape)
                weight_set.append(nn.Parameter(value))
            self.sets.append(weight_set)

    def weights(self, preference: Tensor) -> dict[str, Tensor]:
        preference = preference.to(self.sets[0][0].dtype)
        return {
            name: sum(preference[k] * self.sets[k][i] for k in range(self.num_tasks))
            for i, name in enumerate(self.target_shapes)
        }  # type: ignore[misc]


PREFERENCE_MODELS.register("pamal", ParetoManifold)
