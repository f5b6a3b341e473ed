"""Stage-wise access to a trunk, for the architectures that work between its stages.

Cross-stitch mixes the task columns after chosen stages and MTAN attends to the shared trunk's
intermediate features: both need the trunk as a chain of *stages*. A trunk exposes them by
following :class:`StagedTrunk`: a ``stages()`` method returning modules whose composition is the
trunk's forward pass, ``trunk(x) == stages[-1](…stages[1](stages[0](x)))``, and the last stage
giving the ``(N, out_features)`` features. The built-in trunks (``cnn``, ``lenet``, ``mlp``,
``resnet``) all follow it; a user's own ``nn.Module`` does by adding the method::

    class MyTrunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.block1, self.block2 = ..., ...
            self.out_features = 128

        def forward(self, x):
            return self.block2(self.block1(x))

        def stages(self):
            return [self.block1, self.block2]

The stages must be the trunk's own submodules (not copies), so that their parameters are the
trunk's.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from torch import nn

__all__ = ["StagedTrunk", "check_stage_indices", "fresh_copy", "require_stages"]


@runtime_checkable
class StagedTrunk(Protocol):
    """A trunk whose forward pass is the chain of its :meth:`stages`."""

    out_features: int

    def stages(self) -> Sequence[nn.Module]:
        """The trunk's own submodules, in order; their composition is the forward pass."""
        ...


def require_stages(trunk: nn.Module, architecture: str) -> list[nn.Module]:
    """The stages of ``trunk``, or a clear error naming ``architecture`` when it has none.

    Raises:
        ValueError: the trunk has no ``stages()`` method, or it returns no stage.
    """
    if not callable(getattr(trunk, "stages", None)):
        raise ValueError(
            f"sharing {architecture!r} works between the trunk's stages, but "
            f"{type(trunk).__name__} has no stages() method; add one returning the submodules "
            "whose chain is its forward pass (see mtlkit.models.stages), or use a built-in trunk."
        )
    stages = list(trunk.stages())
    if not stages:
        raise ValueError(f"{type(trunk).__name__}.stages() returned no stage.")
    return stages


def check_stage_indices(stages: Sequence[int] | None, count: int, architecture: str) -> list[int]:
    """The chosen stage indices (``None``: every stage), checked against ``count`` stages."""
    if stages is None:
        return list(range(count))
    chosen = [int(s) for s in stages]
    if not chosen or len(set(chosen)) != len(chosen) or min(chosen) < 0 or max(chosen) >= count:
        raise ValueError(
            f"stages: sharing {architecture!r} takes distinct stage indices in 0..{count - 1} "
            f"(the trunk has {count} stages), got {list(stages)}."
        )
    return sorted(chosen)


def fresh_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with every layer re-initialised (from the global RNG), so that
    copies of one trunk start apart (experts, task columns)."""
    clone = copy.deepcopy(module)
    for layer in clone.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
    return clone
