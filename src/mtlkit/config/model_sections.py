"""The ``model`` section: the trunk, the heads, and how the tasks share the trunk.

The options of the backbone and of the sharing architecture are nested under their own keys
(``model.backbone_options``, ``model.sharing_options``) and checked against the registered
entry's constructor (its keyword-only arguments, their type hints and defaults, and an
architecture's ``check_options``), so that a new backbone or architecture with options needs no
edit here. :func:`moved_model_key` says where a key of the former flat layout went, and
:func:`upgrade_saved_config` reads a run folder written with it.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from mtlkit.config.errors import ConfigError
from mtlkit.config.overrides import _short_repr
from mtlkit.config.section import _one_of, _Section
from mtlkit.models import (
    ARCHITECTURES,
    BACKBONES,
    PREFERENCE_MODELS,
    architecture_options,
    backbone_options,
    preference_options,
)

OPTION_KEYS = ("backbone_options", "sharing_options")
PREFERENCE_BALANCERS = ("ew", "epo")
"""The balancing methods a preference-conditioned network trains with: ``ew`` (the preference's
scalarisation, with COSMOS's cosine term) and ``epo`` (EPO on each batch's preference ray)."""
"""The ``model`` keys that hold the options of the backbone and of the sharing architecture."""


class ModelConfig(_Section):
    """The network: a trunk (``backbone``, with its ``backbone_options``), the heads, and how
    the tasks share it (``sharing``, with its ``sharing_options``). ``mtlkit architectures``
    lists each architecture's options; a backbone's are its factory's keyword-only arguments
    (``batch_norm`` for every built-in one but ``resnet``; ``hidden``, ``activation``,
    ``dropout`` for ``mlp``; ``width``, ``blocks`` for ``resnet``)."""

    backbone: str | None = Field(None, description="default: mlp for tables, else cnn")
    head_hidden: int | None = Field(None, ge=1, description="hidden width of each head's MLP")
    head_batch_norm: bool = Field(
        False, description="normalise each head's hidden layer over the batch (needs head_hidden)"
    )
    sharing: str = Field("hard", description="how the tasks share the trunk")
    backbone_options: dict[str, Any] = Field(
        default_factory=dict, description="the backbone's options, e.g. {hidden: [256, 128]}"
    )
    sharing_options: dict[str, Any] = Field(
        default_factory=dict, description="the sharing architecture's options, e.g. {experts: 4}"
    )
    preference: str | None = Field(
        None, description="one model for the whole front: cosmos, phn or pamal (default: none)"
    )
    preference_options: dict[str, Any] = Field(
        default_factory=dict, description="the preference model's options, e.g. {dirichlet: 0.2}"
    )

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(BACKBONES, value)

    @field_validator("sharing")
    @classmethod
    def _known_sharing(cls, value: str) -> str:
        return _one_of(ARCHITECTURES, value)

    @field_validator("preference")
    @classmethod
    def _known_preference(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(PREFERENCE_MODELS, value)


def moved_model_key(key: str) -> str | None:
    """Where ``model.<key>`` of the former flat layout lives now (``backbone_options`` or
    ``sharing_options``, when some registered backbone or architecture takes an option of
    that name); ``None`` for any other key."""
    if key in ModelConfig.model_fields:
        return None
    if any(key in backbone_options(name) for name in BACKBONES):
        return "backbone_options"
    if any(key in ARCHITECTURES.get(name).options for name in ARCHITECTURES):
        return "sharing_options"
    return None


def check_moved_keys(raw_model: Any) -> None:
    """Refuse a flat backbone or sharing option in a raw ``model`` section, naming its new key.

    Raises:
        ConfigError: e.g. ``model.experts moved: use model.sharing_options.experts``.
    """
    if not isinstance(raw_model, dict):
        return
    for key in raw_model:
        home = moved_model_key(str(key))
        if home is not None:
            raise ConfigError(f"model.{key} moved: use model.{home}.{key}.")


def upgrade_saved_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw config as a run saved it, in the current layout: a ``config.yaml`` (or a
    checkpoint's config) written before the backbone and sharing options were nested has them
    moved under ``model.backbone_options`` and ``model.sharing_options`` (``None`` values,
    options the run did not use, dropped). Any other config is returned as it is."""
    model = raw.get("model")
    if not isinstance(model, dict) or all(moved_model_key(str(key)) is None for key in model):
        return raw
    nested: dict[str, Any] = {k: v for k, v in model.items() if moved_model_key(str(k)) is None}
    nested |= {key: dict(nested.get(key) or {}) for key in OPTION_KEYS}
    for key, value in model.items():
        home = moved_model_key(str(key))
        if home is not None and value is not None:
            nested.setdefault(home, {})[key] = value
    return {**raw, "model": nested}


def resolve_backbone_options(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options of backbone ``name``: its defaults updated by ``given``, each checked
    against the factory's signature (name and type).

    Raises:
        ConfigError: naming ``model.backbone_options.<option>``.
    """
    factory = BACKBONES.get(name)
    return _resolved(factory, backbone_options(name), given, f"backbone {name!r}", "backbone")


def resolve_sharing_options(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options of sharing architecture ``name``: its defaults updated by ``given``, each
    checked against the class's constructor (name and type) and its ``check_options``.

    Raises:
        ConfigError: naming ``model.sharing_options.<option>``.
    """
    entry = ARCHITECTURES.get(name)
    options = _resolved(entry.cls.__init__, entry.options, given, f"sharing {name!r}", "sharing")
    try:
        architecture_options(name, options)
    except ValueError as error:
        raise ConfigError(f"model.sharing_options.{error}") from None
    return options


def resolve_preference_options(
    name: str | None, given: Mapping[str, Any], balancer: str
) -> dict[str, Any]:
    """The options of preference family ``name`` (its defaults updated by ``given``, checked
    against its constructor; ``dirichlet``, the concentration of the training preferences, a
    number > 0), and the check that ``balancer`` trains it.

    Raises:
        ConfigError: naming ``model.preference_options.<option>``, options without a family, or
            a balancing method other than those of :data:`PREFERENCE_BALANCERS`.
    """
    if name is None:
        if given:
            raise ConfigError(
                "model.preference_options: set model.preference (cosmos, phn or pamal) first."
            )
        return {}
    if balancer not in PREFERENCE_BALANCERS:
        raise ConfigError(
            f"balancer.name: a preference-conditioned model (model.preference: {name}) trains "
            f"with {' or '.join(PREFERENCE_BALANCERS)}, not {balancer!r}."
        )
    cls = PREFERENCE_MODELS.get(name)
    options = _resolved(
        cls.__init__, preference_options(name), given, f"preference {name!r}", "preference"
    )
    dirichlet = options["dirichlet"]
    if isinstance(dirichlet, bool) or not isinstance(dirichlet, int | float) or not dirichlet > 0:
        raise ConfigError(
            f"model.preference_options.dirichlet: the concentration must be a number > 0, got "
            f"{_short_repr(dirichlet)}."
        )
    try:
        cls.check_options(**{k: v for k, v in options.items() if k != "dirichlet"})
    except ValueError as error:
        raise ConfigError(f"model.preference_options: {error}") from None
    return options


def _resolved(
    constructor: Callable[..., Any],
    defaults: dict[str, Any],
    given: Mapping[str, Any],
    owner: str,
    section: str,
) -> dict[str, Any]:
    """``defaults`` updated by ``given``, whose names and types are checked against
    ``constructor``'s keyword-only arguments; sequences as lists (as YAML writes them)."""
    hints = _type_hints(constructor)
    resolved = dict(defaults)
    for option, value in given.items():
        key = f"model.{section}_options.{option}"
        if option not in defaults:
            raise ConfigError(
                f"{key}: {owner} takes no option {option!r}; its options: "
                f"{', '.join(defaults) or 'none'}."
            )
        hint = hints.get(option)
        if hint is not None:
            try:
                value = _adapter(hint).validate_python(value)
            except ValidationError as error:
                message = error.errors()[0]["msg"]
                raise ConfigError(f"{key}: {message} (got {_short_repr(value)})") from None
        resolved[option] = value
    return {
        option: list(value) if isinstance(value, tuple) else value
        for option, value in resolved.items()
    }


@functools.cache
def _adapter(hint: Any) -> TypeAdapter:
    """The check of a value against the type ``hint``, as strict as the config's own keys (no
    coercion from strings or booleans, finite numbers); an integer for a float becomes one."""
    return TypeAdapter(hint, config=ConfigDict(strict=True, allow_inf_nan=False))


def _type_hints(constructor: Callable[..., Any]) -> dict[str, Any]:
    """The type hints of ``constructor``'s keyword-only arguments (none for an argument whose
    hint cannot be resolved: its values are then passed on unchecked)."""
    keyword_only = [
        parameter.name
        for parameter in inspect.signature(constructor).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    try:
        hints = typing.get_type_hints(constructor)
    except (NameError, TypeError):
        hints = {}
    return {name: hints[name] for name in keyword_only if name in hints}
