"""Preference-conditioned networks: one model for the whole trade-off front (``model.preference``).

A :class:`PreferenceModel` wraps a multi-task network (any trunk, any sharing) and reads a
preference ``α`` (K values ≥ 0 that sum to 1, one per task) besides the input: the training
draws a new one for every batch (:class:`~mtlkit.training.hooks.preference.PreferenceHook`), and
evaluation serves any point of the front by setting one (:meth:`PreferenceModel.set_preference`).
At rest the preference is uniform.

:data:`PREFERENCE_MODELS` maps a family name to its class (``cosmos``, ``phn``, ``pamal``, one
module each); :func:`wrap_preference` builds one around a network. A family's options are its
class's keyword-only constructor arguments (``model.preference_options``).
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mtlkit.models.sharing import Features, Inputs, MultiTaskModel
from mtlkit.registry import Registry, check_option_names

__all__ = [
    "PREFERENCE_MODELS",
    "GeneratedWeights",
    "PreferenceModel",
    "check_preference",
    "preference_options",
    "wrap_preference",
]


def check_preference(values: Sequence[float] | Tensor, num_tasks: int) -> Tensor:
    """``values`` as a (K,) float tensor, checked to be a preference over ``num_tasks`` tasks.

    Raises:
        ValueError: not K values, a negative or non-finite one, or a sum other than 1 (to 1e-6).
    """
    preference = torch.as_tensor(values, dtype=torch.float32).flatten()
    if preference.numel() != num_tasks:
        raise ValueError(
            f"a preference needs one value per task ({num_tasks}), got {preference.numel()}."
        )
    if not bool(torch.isfinite(preference).all()) or bool((preference < 0).any()):
        raise ValueError(f"a preference's values must be finite and >= 0, got {values!r}.")
    if abs(float(preference.double().sum()) - 1.0) > 1e-6:
        raise ValueError(
            f"a preference's values must sum to 1, got {float(preference.sum()):g} ({values!r})."
        )
    return preference


class PreferenceModel(MultiTaskModel):
    """Base of every preference-conditioned network around ``model``: ``preference`` is a
    non-persistent (K,) buffer (uniform until set) that :meth:`encode` and :meth:`decode` read."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.task_names = list(model.task_names)
        k = len(self.task_names)
        self.register_buffer("preference", torch.full((k,), 1.0 / k), persistent=False)

    cosine_weight: float = 0.0
    """λ of the training objective Σₖ αₖLₖ − λ·cos(L, α) (COSMOS's; 0: linear scalarisation)."""

    dirichlet: float = 1.0
    """The concentration of the Dirichlet its training preferences are drawn from."""

    @classmethod
    def check_options(cls, **options: Any) -> None:
        """Refuse bad option values (ValueError naming the option) before anything is built;
        a family with options that can be wrong overrides it."""

    @classmethod
    def inner_input_shape(cls, input_shape: Sequence[int], num_tasks: int) -> tuple[int, ...]:
        """The per-sample input shape of the wrapped network for inputs of ``input_shape``."""
        return tuple(input_shape)

    @property
    def num_tasks(self) -> int:
        """K, the preference's length."""
        return len(self.task_names)

    def set_preference(self, preference: Sequence[float] | Tensor) -> None:
        """Serve the front's point of ``preference`` (checked: K values ≥ 0 summing to 1)."""
        checked = check_preference(preference, self.num_tasks)
        self.preference.copy_(checked.to(self.preference.device))


class GeneratedWeights(PreferenceModel):
    """A preference-conditioned network whose weights are a function of the preference
    (:meth:`weights`): ``model`` is run with them (its own parameters are frozen and only give
    the shapes; its buffers, BatchNorm's statistics, are its own). :meth:`encode` generates the
    weights that the following :meth:`decode` uses."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__(model)
        self.target = model
        self.target_shapes = {name: p.shape for name, p in model.named_parameters()}
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self._generated: dict[str, Tensor] | None = None

    @abstractmethod
    def weights(self, preference: Tensor) -> dict[str, Tensor]:
        """The target network's parameters (name → tensor of the target's shape) for
        ``preference``; differentiable in this model's own parameters."""

    def _call(self, method: str, argument: Any, weights: Mapping[str, Tensor]) -> Any:
        """``target.<method>(argument)`` with the parameters ``weights``."""
        named = {f"target.{name}": value for name, value in weights.items()}
        return functional_call(_Method(self.target, method), named, (argument,))

    def encode(self, x: Inputs) -> Features:
        self._generated = self.weights(self.preference)
        return self._call("encode", x, self._generated)

    def decode(self, features: Features) -> dict[str, Tensor]:
        generated = self._generated
        if generated is None:
            generated = self.weights(self.preference)
        self._generated = None  # one forward's weights, not kept beyond it
        return self._call("decode", features, generated)

    def forward(self, x: Inputs) -> dict[str, Tensor]:
        generated = self.weights(self.preference)
        return self._call("forward", x, generated)

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Every trainable parameter: each one makes weights that every task's loss reads."""
        return (p for p in self.parameters() if p.requires_grad)

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        if task not in self.task_names:
            raise KeyError(f"no task {task!r}; tasks are {self.task_names}.")
        return iter(())


class _Method(nn.Module):
    """Calls one method of ``target`` as its forward (for :func:`torch.func.functional_call`)."""

    def __init__(self, target: nn.Module, method: str) -> None:
        super().__init__()
        self.target = target
        self.method = method

    def forward(self, argument: Any) -> Any:
        return getattr(self.target, self.method)(argument)


PREFERENCE_MODELS: Registry[type[PreferenceModel]] = Registry("preference-conditioned model")
"""Family name → its :class:`PreferenceModel` class."""


def preference_options(name: str) -> dict[str, Any]:
    """The options of family ``name`` with their defaults: ``dirichlet`` (every family's) and its
    class's keyword-only arguments."""
    cls = PREFERENCE_MODELS.get(name)
    return {"dirichlet": PreferenceModel.dirichlet} | {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def wrap_preference(name: str, model: MultiTaskModel, **options: Any) -> PreferenceModel:
    """Family ``name`` around ``model`` (built for ``inner_input_shape`` of the data's).

    Raises:
        ValueError: unknown family (the message lists the known ones), an option it does not
            take, or a bad option value.
    """
    known = preference_options(name)
    check_option_names(f"preference {name!r}", options, known)
    dirichlet = float(options.pop("dirichlet", PreferenceModel.dirichlet))
    if not dirichlet > 0:
        raise ValueError(f"dirichlet must be a number > 0, got {dirichlet!r}.")
    wrapped = PREFERENCE_MODELS.get(name)(model, **options)
    wrapped.dirichlet = dirichlet
    return wrapped
