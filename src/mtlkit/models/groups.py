"""Layer groups: a multi-task network cut into named, disjoint groups of layers, input side
first — the units that fine-tuning freezes, unfreezes and gives learning rates to.

A hard-sharing network's groups are its trunk's stages, ``stage1``, ``stage2``, …, then
``heads`` (every task head). A sequential trunk's stages are cut before each convolution or
linear layer: a stage is one weighted layer with what follows it (activation, pooling,
normalisation, dropout), so the seed CNN and LeNet have three stages (two convolutions, the fully
connected layer) and an MLP one per hidden layer. A trunk that is not an ``nn.Sequential`` is one
stage.

Freezing a group stops its parameters from learning (``requires_grad`` false, so no gradient
reaches them and the optimizer leaves them as they are) and runs its layers in inference mode
even while the network trains: batch normalisation keeps its running statistics and normalises
with them, dropout is off. A frozen group computes exactly what it computed when it was frozen.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn
from torch.utils.hooks import RemovableHandle

from mtlkit.models.sharing import HardSharing, MultiTaskModel

HEADS = "heads"
"""The name of the group of every task head."""

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The layers that open a new stage of a sequential trunk."""


LayerGroups = dict[str, tuple[nn.Module, ...]]
"""Group name → the modules it holds (each one a module the network calls itself)."""


def trunk_stages(trunk: nn.Module) -> list[tuple[nn.Module, ...]]:
    """The stages of a trunk, input side first (see the module docstring)."""
    if not isinstance(trunk, nn.Sequential):
        return [(trunk,)]
    stages: list[list[nn.Module]] = [[]]
    for layer in trunk:
        if isinstance(layer, _WEIGHTED) and any(isinstance(m, _WEIGHTED) for m in stages[-1]):
            stages.append([])
        stages[-1].append(layer)
    return [tuple(stage) for stage in stages]


def layer_groups(model: MultiTaskModel) -> LayerGroups:
    """The named layer groups of ``model``: ``stage1``, …, ``stageN`` of its trunk, then
    ``heads``.

    Raises:
        ValueError: the model is not a hard-sharing network (the only one with layer groups).
    """
    if not isinstance(model, HardSharing):
        raise ValueError(
            f"{type(model).__name__} has no layer groups; freezing, unfreezing and per-group "
            "learning rates need a hard-sharing network (HardSharing)."
        )
    groups: LayerGroups = {
        f"stage{index}": stage for index, stage in enumerate(trunk_stages(model.trunk), 1)
    }
    groups[HEADS] = tuple(model.heads.values())
    return groups


def group_parameters(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """The parameters of a group's modules."""
    return [p for module in modules for p in module.parameters()]


def check_group_names(groups: LayerGroups, names: Iterable[str]) -> None:
    """Raise a ``ValueError`` naming the first of ``names`` that is not a group, and the groups."""
    for name in names:
        if name not in groups:
            raise ValueError(f"no layer group {name!r}; the network's groups: {', '.join(groups)}.")


class GroupFreezer:
    """Freezes and unfreezes the layer groups of one model (see the module docstring).

    Args:
        model: a hard-sharing network.
    """

    def __init__(self, model: MultiTaskModel) -> None:
        self.groups = layer_groups(model)
        self._hooks: dict[str, list[RemovableHandle]] = {}

    @property
    def frozen(self) -> list[str]:
        """The frozen groups, input side first."""
        return [name for name in self.groups if name in self._hooks]

    def freeze(self, names: Iterable[str]) -> None:
        """Freeze the groups ``names`` (already frozen ones stay so).

        Raises:
            ValueError: a name that is not a group.
        """
        names = list(names)
        check_group_names(self.groups, names)
        for name in names:
            if name in self._hooks:
                continue
            modules = self.groups[name]
            for parameter in group_parameters(modules):
                parameter.requires_grad_(False)
            self._hooks[name] = [m.register_forward_pre_hook(_inference_mode) for m in modules]

    def unfreeze(self, names: Iterable[str]) -> None:
        """Let the groups ``names`` learn again, in the network's mode.

        Raises:
            ValueError: a name that is not a group.
        """
        names = list(names)
        check_group_names(self.groups, names)
        for name in names:
            for hook in self._hooks.pop(name, []):
                hook.remove()
            for parameter in group_parameters(self.groups[name]):
                parameter.requires_grad_(True)


def _inference_mode(module: nn.Module, _inputs: object) -> None:
    """A forward pre-hook: run ``module`` (and its sub-modules) in eval mode."""
    module.eval()
