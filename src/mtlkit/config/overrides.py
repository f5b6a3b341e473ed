"""Changing a raw config (``--set key=value``, a dotted key), comparing two configs, and the
balancing method's options with the run's seed."""

from __future__ import annotations

from typing import Any

from mtlkit.balancing import describe
from mtlkit.config.errors import ConfigError
from mtlkit.config.files import _parse_yaml


def balancer_options(name: str, options: dict[str, Any], run_seed: int) -> dict[str, Any]:
    """``options`` with ``seed = run_seed`` for a seeded method that does not set its own."""
    if "seed" in describe(name).options and "seed" not in options:
        return {**options, "seed": run_seed}
    return options


def config_difference(
    first: dict[str, Any], second: dict[str, Any], prefix: str = ""
) -> str | None:
    """The first dotted key whose value differs between two config dicts, as
    ``"key: A vs B"``; ``None`` when they are equal."""
    for key in sorted(set(first) | set(second), key=str):
        a, b = first.get(key), second.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = config_difference(a, b, f"{prefix}{key}.")
            if found is not None:
                return found
        elif a != b or (key in first) != (key in second):
            return f"{prefix}{key}: {_short_repr(a)} vs {_short_repr(b)}"
    return None


def _short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters, for an error message of one line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def set_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set a.b.c=value`` to a raw config mapping; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: write it as key=value, e.g. train.epochs=3.")
    dotted, text = assignment.split("=", 1)
    set_value(raw, dotted, _parse_yaml(text, f"--set {dotted}"), f"--set {assignment!r}")


def set_value(raw: dict[str, Any], dotted: str, value: Any, where: str | None = None) -> None:
    """Set the dotted key ``dotted`` (``optim.lr``) of a raw config mapping to ``value``.

    ``where`` names the setting in errors (default: the key).
    """
    where = where or dotted
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"{where}: the key {dotted!r} has an empty part.")
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {key} is a value, not a section.")
        node = child
    node[keys[-1]] = value
