"""What ``mtlkit tune`` searches: one parameter per ``--param``, parsed, suggested, judged.

``KEY=loguniform:LOW:HIGH`` and ``KEY=uniform:LOW:HIGH`` are float ranges (log-scaled or not),
``KEY=int:LOW:HIGH`` an integer range, ``KEY=V1,V2,…`` a list of values (YAML scalars). When every
parameter is a list, the search is the full grid of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mtlkit.config import ConfigError

RANGES = ("loguniform", "uniform", "int")
"""The range kinds a ``--param`` may name."""
BOUNDARY_FRACTION = 0.05
"""A tuned value within this fraction of its range (log-scaled for ``loguniform``) of an end is
on the boundary: the best value may lie outside the range."""


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (``kind`` in :data:`RANGES`, ``low``, ``high``) or a list
    of ``values`` (``kind`` ``"list"``)."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value of this parameter."""
        if self.kind == "list":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform")

    def on_boundary(self, value: Any) -> bool:
        """Whether ``value`` sits at an end of the range (or is the least or greatest of ≥ 2
        numeric list values)."""
        if self.kind == "list":
            numbers = [v for v in self.values if isinstance(v, int | float)]
            return len(numbers) == len(self.values) > 1 and value in (min(numbers), max(numbers))
        scale = math.log if self.kind == "loguniform" else float
        low, high, at = scale(self.low), scale(self.high), scale(value)
        return min(at - low, high - at) <= BOUNDARY_FRACTION * (high - low)

    def describe(self) -> str:
        """``optim.lr=loguniform:0.001:0.1`` or ``optim.lr=0.1,0.01``."""
        if self.kind == "list":
            return f"{self.key}={','.join(map(str, self.values))}"
        return f"{self.key}={self.kind}:{self.low:g}:{self.high:g}"


def parse_param(text: str) -> Param:
    """Parse one ``--param`` (see the module's docstring).

    Raises:
        ConfigError: the syntax, a bound or the range is wrong (one line naming it and the fix).
    """
    import yaml

    key, _, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    usage = (
        "write it as KEY=loguniform:LOW:HIGH, KEY=uniform:LOW:HIGH, KEY=int:LOW:HIGH or KEY=V1,V2"
    )
    if not key or not spec:
        raise ConfigError(f"--param {text!r}: {usage}, e.g. optim.lr=loguniform:1e-3:1e-1.")
    kind, *bounds = spec.split(":")
    if kind not in RANGES:
        if ":" in spec:
            raise ConfigError(f"--param {text!r}: unknown range {kind!r}; {usage}.")
        values = tuple(yaml.safe_load(value) for value in spec.split(","))
        return Param(key, "list", values=values)
    try:
        low, high = (float(bound) for bound in bounds)
    except ValueError:
        raise ConfigError(f"--param {text!r}: give two numbers, {kind}:LOW:HIGH.") from None
    if not low < high or (kind == "loguniform" and low <= 0):
        raise ConfigError(
            f"--param {text!r}: need LOW < HIGH{' and LOW > 0' if kind == 'loguniform' else ''}."
        )
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"--param {text!r}: int bounds must be whole numbers.")
    return Param(key, kind, low, high)


def is_grid(params: Sequence[Param]) -> bool:
    """Whether every parameter is a list (the search is then their full grid)."""
    return all(param.kind == "list" for param in params)


def grid_size(params: Sequence[Param]) -> int:
    """The number of combinations of list parameters."""
    return math.prod(len(param.values) for param in params)


def sample_values(params: Sequence[Param]) -> dict[str, Any]:
    """One value per parameter (the first of a list, the low end of a range), to check that
    every key exists in the configuration before any training."""
    return {
        param.key: param.values[0]
        if param.kind == "list"
        else (int(param.low) if param.kind == "int" else param.low)
        for param in params
    }
