"""A benchmark's own training defaults (its *recipe*), layered between the config's global
defaults and the keys a config states.

Each registered benchmark carries the training it needs (:attr:`Benchmark.recipe
<mtlkit.data.benchmarks.registry.Benchmark>`: optimizer, learning rate, epochs, trunk, ...), so
that ``data: {benchmark: gradnorm-toy}`` alone trains. The recipe fills only what the raw config
leaves out: a key the config states always wins, and a section whose identity the config changes
(``optim.name``, ``schedule.name``, ``model.backbone``) is the config's alone, so that Adam's
learning rate never reaches a config that chose SGD. The filled values are ordinary config values:
the resolved ``config.yaml`` of a run shows them.
"""

from __future__ import annotations

import copy
from typing import Any

from mtlkit.data import BENCHMARKS

SECTION_IDENTITY = {"balancer": "name", "schedule": "name", "optim": "name", "data": "benchmark"}
"""A section's identity key: the other keys of a section mean something only for its identity
(another balancing method's options are not the first one's)."""

_RECIPE_IDENTITY = {**SECTION_IDENTITY, "model": "backbone"}
"""The identity keys a recipe's section is matched on (a backbone's options are its own)."""

DEFAULT_BENCHMARK = "multi-mnist"
"""The benchmark of a config that names no data."""


def with_benchmark_recipe(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its benchmark's recipe filled in where ``raw`` leaves a key out.

    A raw config that reads tables, names an unknown benchmark or holds malformed sections is
    returned as it is: validation reports those. ``raw`` itself is not changed.
    """
    benchmark = _benchmark_of(raw)
    if benchmark is None:
        return raw
    filled = dict(raw)
    for section, defaults in BENCHMARKS.get(benchmark).recipe.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            continue
        identity = _RECIPE_IDENTITY.get(section)
        if identity in given and given[identity] != defaults.get(identity, given[identity]):
            continue  # the config chose another optimizer, schedule or trunk: its own defaults
        filled[section] = {**copy.deepcopy(dict(defaults)), **given}
    return filled


def _benchmark_of(raw: dict[str, Any]) -> str | None:
    """The registered benchmark a raw config trains on; ``None`` for tables, an unknown name
    or a malformed ``data`` or ``tasks`` section."""
    data = raw.get("data", {})
    tasks = raw.get("tasks", {})
    if not isinstance(data, dict) or not isinstance(tasks, dict):
        return None
    if data.get("table") is not None or any(
        isinstance(entry, dict) and entry.get("table") is not None for entry in tasks.values()
    ):
        return None
    name = data.get("benchmark")
    name = DEFAULT_BENCHMARK if name is None else name
    return name if isinstance(name, str) and name in BENCHMARKS else None
