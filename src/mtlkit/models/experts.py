"""Mixtures of experts: MMoE (Ma et al., KDD 2018), CGC and PLE (Tang et al., RecSys 2020),
DSelect-k (Hazimeh et al., NeurIPS 2021).

One network covers the family, :class:`ExpertLevels`: ``levels`` levels of experts, each level
with shared experts and ``task_experts`` experts per task; task ``k``'s gate mixes its own and the
shared experts' outputs into its features for the next level, and below the last level a shared
gate mixes every expert into the shared experts' next input (PLE's progressive extraction).
MMoE is one level of shared experts only, CGC one level with task experts, PLE several levels,
DSelect-k MMoE with sparse gates.

The first level's experts are, by ``expert``:

* ``"mlp"`` (the default): a small MLP (``Linear(D, D)`` → ReLU) each, over the features ``D``
  of one shared trunk; the gates read those features;
* ``"trunk"``: a copy of the trunk each (the given trunk is the first; the others are
  re-initialised copies); the gates read the flattened input, as in the MMoE paper.

Experts of later levels are small MLPs. Every task's features have the trunk's width, so the
heads are those of hard sharing. On a dense trunk (feature maps, :func:`~mtlkit.models.is_dense`)
the MLP experts are 1×1 convolutions, mixed per pixel, and the gates read the maps' spatial mean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from math import prod
from typing import Any

import torch
from torch import Tensor, nn

from mtlkit.models.dense import is_dense
from mtlkit.models.gates import DSelectGate, SoftmaxGate, check_dselect
from mtlkit.models.soft import SoftSharing
from mtlkit.models.stages import fresh_copy

__all__ = ["CGC", "EXPERT_KINDS", "MMoE", "PLE", "DSelectK", "ExpertLevels"]

EXPERT_KINDS = ("mlp", "trunk")
"""What a first-level expert is: a small MLP over a shared trunk's features, or a trunk copy."""

GateFactory = Callable[[int, int], nn.Module]
"""``gate(in_features, experts)`` -> a module mapping (N, in_features) to (N, experts) weights."""


def _mlp_expert(width: int, dense: bool) -> nn.Module:
    """``Linear(D, D)`` → ReLU over feature vectors; over a dense trunk's feature maps, the same
    per pixel (a 1×1 convolution)."""
    if dense:
        return nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU())
    return nn.Sequential(nn.Linear(width, width), nn.ReLU())


def _gate_input(features: Tensor) -> Tensor:
    """What a gate reads of a level's input: feature maps' spatial mean, or the flattened input."""
    return features.mean((2, 3)) if features.dim() == 4 else features.flatten(1)


def _mix(weights: Tensor, outputs: Sequence[Tensor]) -> Tensor:
    """``Σₑ weights[:, e] · outputs[e]`` for (N, E) weights and E (N, D) outputs (or (N, D, H, W)
    maps)."""
    stacked = torch.stack(list(outputs))
    if stacked.dim() == 5:
        return torch.einsum("ne,endhw->ndhw", weights, stacked)
    return torch.einsum("ne,end->nd", weights, stacked)


class ExpertLevels(SoftSharing):
    """Levels of shared and task-specific experts mixed by per-task gates (the family's network).

    Shares: the trunk (``expert="mlp"``), the shared experts, the shared gates, and the task
    experts below the last level (the shared gate mixes them into every task's input). Each task
    owns its head, its experts of the last level, and its gates of the last two levels (their
    outputs reach only that task).

    Args:
        trunk: the trunk (see the module's docstring for what ``expert`` does with it).
        heads: task name -> head reading ``trunk.out_features`` features.
        input_shape: the per-sample input shape (needed by ``expert="trunk"``: the gates read
            the flattened input).
        experts: shared experts per level (≥ 1).
        task_experts: experts per task per level (≥ 0).
        levels: levels of experts (≥ 1).
        expert: ``"mlp"`` or ``"trunk"``.
        gate: makes each task's gate (default :class:`~mtlkit.models.gates.SoftmaxGate`); the
            shared gates are softmax gates.
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        input_shape: Sequence[int] | None = None,
        *,
        experts: int,
        task_experts: int,
        levels: int,
        expert: str = "mlp",
        gate: GateFactory = SoftmaxGate,
    ) -> None:
        super().__init__(heads)
        ExpertLevels.check_options(
            experts=experts, task_experts=task_experts, levels=levels, expert=expert
        )
        width = trunk.out_features
        self.levels = levels
        self.bottom: nn.Module | None = None
        if expert == "mlp":
            self.bottom = trunk
            gate_width = width
        elif input_shape is None:
            raise ValueError("expert='trunk' needs input_shape: its gates read the input.")
        else:
            gate_width = prod(int(n) for n in input_shape)
        unused = [trunk] if self.bottom is None else []

        def make_expert(level: int) -> nn.Module:
            if level > 0 or self.bottom is not None:
                return _mlp_expert(width, is_dense(trunk))
            return unused.pop() if unused else fresh_copy(trunk)

        def level_experts(level: int, count: int) -> nn.ModuleList:
            return nn.ModuleList([make_expert(level) for _ in range(count)])

        self.shared_experts = nn.ModuleList([level_experts(n, experts) for n in range(levels)])
        self.task_experts = nn.ModuleDict(
            {
                task: nn.ModuleList([level_experts(n, task_experts) for n in range(levels)])
                for task in self.task_names
            }
        )
        inputs = [gate_width] + [width] * (levels - 1)
        self.task_gates = nn.ModuleDict(
            {
                task: nn.ModuleList([gate(n, task_experts + experts) for n in inputs])
                for task in self.task_names
            }
        )
        every = experts + len(self.task_names) * task_experts
        self.shared_gates = nn.ModuleList([SoftmaxGate(n, every) for n in inputs[:-1]])

    @classmethod
    def check_options(cls, **options: Any) -> None:
        for name, least in (("experts", 1), ("task_experts", 0), ("levels", 1)):
            value = options.get(name)
            if value is not None and (not isinstance(value, int) or value < least):
                raise ValueError(f"{name} must be an integer ≥ {least}, got {value!r}.")
        kind = options.get("expert", "mlp")
        if kind not in EXPERT_KINDS:
            raise ValueError(f"expert must be one of: {', '.join(EXPERT_KINDS)}; got {kind!r}.")

    def encode_tasks(self, x: Tensor, tasks: Sequence[str]) -> dict[str, Tensor]:
        level_in = x if self.bottom is None else self.bottom(x)
        gate_in = level_in.flatten(1) if self.bottom is None else _gate_input(level_in)
        shared_in, shared_gate_in = level_in, gate_in
        task_in = dict.fromkeys(self.task_names, level_in)
        task_gate_in = dict.fromkeys(self.task_names, gate_in)
        for level in range(self.levels):
            last = level == self.levels - 1
            needed = tasks if last else self.task_names  # below the top, all feed the shared gate
            shared_out = [e(shared_in) for e in self.shared_experts[level]]
            own = {t: [e(task_in[t]) for e in self.task_experts[t][level]] for t in needed}
            task_in = {
                t: _mix(self.task_gates[t][level](task_gate_in[t]), own[t] + shared_out)
                for t in needed
            }
            task_gate_in = {t: _gate_input(z) for t, z in task_in.items()}
            if not last:
                everything = shared_out + [o for t in self.task_names for o in own[t]]
                shared_in = _mix(self.shared_gates[level](shared_gate_in), everything)
                shared_gate_in = _gate_input(shared_in)
        return {task: task_in[task] for task in tasks}

    def private_modules(self, task: str) -> list[nn.Module]:
        gates = self.task_gates[task]
        return [self.task_experts[task][-1], *gates[max(0, self.levels - 2) :]]


class MMoE(ExpertLevels):
    """MMoE: shared experts, one softmax gate per task mixing them.

    Shares: the experts (and the trunk under them with ``expert="mlp"``); each task owns its gate
    and head. Parameters (seed CNN, 2 tasks, 4 experts): ``mlp`` 1.3× hard, ``trunk`` 4.0×. Step
    time: ``mlp`` hard's plus E small MLPs (measured within 10% of hard, ``ew`` and ``upgrad``);
    ``trunk`` about E× hard.
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        input_shape: Sequence[int] | None = None,
        *,
        experts: int = 4,
        expert: str = "mlp",
    ) -> None:
        super().__init__(
            trunk, heads, input_shape, experts=experts, task_experts=0, levels=1, expert=expert
        )


class CGC(ExpertLevels):
    """CGC (PLE's one-level block): shared experts plus each task's own experts, one softmax gate
    per task over its own and the shared experts.

    Shares: the shared experts (and the trunk with ``expert="mlp"``); each task owns its experts,
    its gate and its head. Parameters (seed CNN, 2 tasks, 2 shared + 1 per task): ``mlp`` 1.3×
    hard, ``trunk`` 4.0×. Step time: like MMoE with as many experts in all (``mlp``: measured
    within 5% of hard).
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        input_shape: Sequence[int] | None = None,
        *,
        experts: int = 2,
        task_experts: int = 1,
        expert: str = "mlp",
    ) -> None:
        super().__init__(
            trunk,
            heads,
            input_shape,
            experts=experts,
            task_experts=task_experts,
            levels=1,
            expert=expert,
        )


class PLE(ExpertLevels):
    """PLE: ``levels`` stacked CGC levels; below the top, a shared gate mixes every expert into
    the shared experts' next input (progressive layered extraction).

    Shares: the trunk (``expert="mlp"``), the shared experts and gates, and the task experts
    below the top level (they reach every task through the shared gate); each task owns its
    top-level experts, its gates of the top two levels and its head. Parameters (seed CNN,
    2 tasks, 2 levels of 2 shared + 1 per task): ``mlp`` 1.6× hard. Step time: ``levels`` CGC
    levels over the trunk's features (measured 1.2× hard with ``ew``, 1.0× with ``upgrad``).
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        input_shape: Sequence[int] | None = None,
        *,
        experts: int = 2,
        task_experts: int = 1,
        levels: int = 2,
        expert: str = "mlp",
    ) -> None:
        super().__init__(
            trunk,
            heads,
            input_shape,
            experts=experts,
            task_experts=task_experts,
            levels=levels,
            expert=expert,
        )


class DSelectK(ExpertLevels):
    """DSelect-k: MMoE whose gates select at most ``k`` experts per task, sparse yet
    differentiable (:class:`~mtlkit.models.gates.DSelectGate`).

    Shares: the experts (and the trunk with ``expert="mlp"``); each task owns its gate and head.
    Parameters: those of MMoE with as many experts (the gates are smaller). Step time: MMoE's
    (measured 1.1× hard with ``ew``, 1.0× with ``upgrad``); every expert still runs (the
    selection is in the weights, not in skipped computation).
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Mapping[str, nn.Module],
        input_shape: Sequence[int] | None = None,
        *,
        experts: int = 4,
        k: int = 2,
        gamma: float = 1.0,
        expert: str = "mlp",
    ) -> None:
        DSelectK.check_options(experts=experts, k=k, gamma=gamma)
        super().__init__(
            trunk,
            heads,
            input_shape,
            experts=experts,
            task_experts=0,
            levels=1,
            expert=expert,
            gate=lambda n, e: DSelectGate(n, e, k, gamma),
        )

    @classmethod
    def check_options(cls, **options: Any) -> None:
        super().check_options(**options)
        check_dselect(options.get("experts", 4), options.get("k", 2), options.get("gamma", 1.0))
