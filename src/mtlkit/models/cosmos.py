"""COSMOS (Ruchte & Grabocka, 2021): the preference enters the network with the input."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from mtlkit.models.preference import PREFERENCE_MODELS, PreferenceModel
from mtlkit.models.sharing import Features, Inputs, MultiTaskModel

__all__ = ["COSMOS"]


class COSMOS(PreferenceModel):
    """The preference as part of the input: K extra features appended to each row of a table, or
    K extra channels (each filled with one αₖ) appended to an image; trained on
    Σₖ αₖLₖ − λ·cos(L, α), whose cosine term pulls the losses onto the preference's ray.

    Args:
        model: the network, built for the widened input (:meth:`inner_input_shape`).
        cosine_weight: λ, the weight of the cosine term (COSMOS's default 1).
    """

    def __init__(self, model: MultiTaskModel, *, cosine_weight: float = 1.0) -> None:
        super().__init__(model)
        self.check_options(cosine_weight=cosine_weight)
        self.model = model
        self.cosine_weight = float(cosine_weight)

    @classmethod
    def check_options(cls, *, cosine_weight: float = 1.0) -> None:
        if not cosine_weight >= 0.0:
            raise ValueError(f"cosine_weight must be a number >= 0, got {cosine_weight!r}.")

    @classmethod
    def inner_input_shape(cls, input_shape: Sequence[int], num_tasks: int) -> tuple[int, ...]:
        """K more features (a table's row) or K more channels (an image)."""
        first, *rest = input_shape
        return (first + num_tasks, *rest)

    def _conditioned(self, x: Tensor) -> Tensor:
        """``x`` with the preference appended along dimension 1 (features or channels)."""
        column = self.preference.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
        return torch.cat([x, column.expand(x.shape[0], -1, *x.shape[2:])], dim=1)

    def encode(self, x: Inputs) -> Features:
        if isinstance(x, Tensor):
            return self.model.encode(self._conditioned(x))
        return self.model.encode({task: self._conditioned(v) for task, v in x.items()})

    def decode(self, features: Features) -> dict[str, Tensor]:
        return self.model.decode(features)

    @property
    def shared_representation(self) -> bool:  # type: ignore[override]
        return self.model.shared_representation

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.model.shared_parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        return self.model.task_parameters(task)


PREFERENCE_MODELS.register("cosmos", COSMOS)
