"""The ``model`` section: the trunk, the heads, and how the tasks share the trunk."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from mtlkit.config.section import _one_of, _Section
from mtlkit.models import ACTIVATIONS, ARCHITECTURES, BACKBONES, EXPERT_KINDS

_BACKBONE_KEYS = ("hidden", "activation", "dropout", "batch_norm", "width", "blocks")
"""The ``model`` keys that are options of a backbone (``mlp``; ``resnet``)."""
_SHARING_KEYS = (
    "experts",
    "task_experts",
    "levels",
    "k",
    "gamma",
    "expert",
    "stages",
    "self_weight",
)
"""The ``model`` keys that are options of a sharing architecture (see ``mtlkit architectures``)."""


class ModelConfig(_Section):
    """The network: a trunk (``backbone``, with its options), the heads, and how the tasks share
    it (``sharing``, with its options). ``batch_norm`` is an option of every built-in backbone
    but ``resnet`` (which always normalises), ``hidden``, ``activation`` and ``dropout`` of
    ``mlp``, ``width`` and ``blocks`` of ``resnet``; ``experts`` … ``self_weight`` of the sharing
    architectures."""

    backbone: str | None = Field(None, description="default: mlp for tables, else cnn")
    head_hidden: int | None = Field(None, ge=1, description="hidden width of each head's MLP")
    sharing: str = Field("hard", description="how the tasks share the trunk")
    hidden: list[int] | None = Field(None, description="mlp: hidden widths, first to last")
    activation: str | None = None
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    batch_norm: bool | None = None
    width: int | None = Field(None, ge=1, description="resnet: channels of the first stage")
    blocks: list[int] | None = Field(None, description="resnet: basic blocks per stage")
    experts: int | None = Field(None, ge=1, description="mmoe/cgc/ple/dselect-k: shared experts")
    task_experts: int | None = Field(None, ge=0, description="cgc/ple: experts per task")
    levels: int | None = Field(None, ge=1, description="ple: levels of experts")
    k: int | None = Field(None, ge=1, description="dselect-k: experts selected per task")
    gamma: float | None = Field(None, gt=0.0, description="dselect-k: smooth-step width")
    expert: str | None = Field(None, description="mlp or trunk: what a first-level expert is")
    stages: list[int] | None = Field(None, description="cross-stitch/mtan: stage indices")
    self_weight: float | None = Field(None, gt=0.0, le=1.0, description="cross-stitch")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(BACKBONES, value)

    @field_validator("sharing")
    @classmethod
    def _known_sharing(cls, value: str) -> str:
        return _one_of(ARCHITECTURES, value)

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 1):
            raise ValueError("must list one or more positive widths")
        return value

    @field_validator("blocks")
    @classmethod
    def _depths(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 1):
            raise ValueError("must list one or more positive numbers of blocks")
        return value

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(tuple(ACTIVATIONS), value)

    @field_validator("expert")
    @classmethod
    def _known_expert(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(EXPERT_KINDS, value)

    @property
    def options(self) -> dict[str, Any]:
        """The backbone's options that are set."""
        return {key: getattr(self, key) for key in _BACKBONE_KEYS if getattr(self, key) is not None}

    @property
    def sharing_options(self) -> dict[str, Any]:
        """The sharing architecture's options that are set."""
        return {key: getattr(self, key) for key in _SHARING_KEYS if getattr(self, key) is not None}
