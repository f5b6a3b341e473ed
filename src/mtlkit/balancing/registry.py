"""Every balancing method by name: ``create("upgrad")``, ``available()``.

The methods register themselves with :func:`register` when their module is imported; the package
``mtlkit.balancing`` imports every module of ``mtlkit.balancing.methods``, so after ``import
mtlkit.balancing`` (or any import from it) every method is known. This module imports no method.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mtlkit.balancing.base import Balancer, GramianWeighting, LossWeighting
from mtlkit.balancing.engine.strategy import Engine
from mtlkit.balancing.options import check_int
from mtlkit.balancing.periodic import PeriodicWeights

_REGISTRY: dict[str, type[Balancer]] = {}

_Method = TypeVar("_Method", bound=type[Balancer])


def register(name: str) -> Callable[[_Method], _Method]:
    """Class decorator that makes a :class:`Balancer` subclass creatable by ``name``."""

    def decorate(cls: _Method) -> _Method:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"balancing method {name!r} is registered twice.")
        cls.method_name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its name, one-line description, family, and options with defaults."""

    name: str
    summary: str
    family: str
    needs: str
    options: dict[str, Any]


def available() -> list[MethodInfo]:
    """All registered methods, sorted by name."""
    return [_describe(name, cls) for name, cls in sorted(_REGISTRY.items())]


def _describe(name: str, cls: type[Balancer]) -> MethodInfo:
    doc = inspect.getdoc(cls) or ""
    summary = doc.splitlines()[0] if doc else ""
    options = {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self", "num_tasks") and p.kind is p.KEYWORD_ONLY
    }
    family = "loss weighting" if issubclass(cls, LossWeighting) else "gradient aggregation"
    return MethodInfo(name, summary, family, cls.needs.name.lower(), options)


def describe(name: str) -> MethodInfo:
    """The description of the method registered as ``name`` (its options and their defaults)."""
    return _describe(name, method_class(name))


def method_class(name: str) -> type[Balancer]:
    """The class registered as ``name``; a clear error lists the known names otherwise."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown balancing method {name!r}; choose one of: {known}.")
    return _REGISTRY[name]


def create(name: str, *, num_tasks: int | None = None, **options: Any) -> Balancer:
    """Create the balancing method registered as ``name`` with its options.

    Args:
        name: a registered method name (see :func:`available`).
        num_tasks: K, the number of tasks; required by methods that keep per-task state.
        **options: the method's own keyword options (see ``mtlkit methods``), and for a Gramian
            weighting ``weights_every=n``: solve every n steps, reuse the weights in between
            (:class:`~mtlkit.balancing.periodic.PeriodicWeights`; 1, the default, solves at
            every step); and for a Gramian weighting on the shared parameters ``memory_budget``
            (bytes of Jacobian at once, default 1 GiB) and ``gramian_path`` (``"auto"``,
            ``"full"`` or ``"layers"``), the settings of its
            :class:`~mtlkit.balancing.engine.strategy.Engine`.

    Raises:
        ValueError: unknown name, unknown option, or an option out of range; the message names it.
    """
    cls = method_class(name)
    every = check_int(name, "weights_every", options.pop("weights_every", 1), low=1)
    engine_options = {key: options.pop(key) for key in _ENGINE_OPTIONS if key in options}
    allowed = _describe(name, cls).options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) or "none"
        raise ValueError(
            f"balancing method {name!r} has no option {unknown[0]!r}; its options are: "
            f"{allowed_text}."
        )
    method = cls(num_tasks=num_tasks, **options)
    if engine_options:
        method.engine = _engine(name, method, engine_options)  # type: ignore[attr-defined]
    if every == 1:
        return method
    return PeriodicWeights(method, every)  # type: ignore[arg-type]  # it checks the method


_ENGINE_OPTIONS = ("gramian_path", "memory_budget")
"""Options of every Gramian weighting on the shared parameters, set on its engine."""


def _engine(name: str, method: Balancer, options: dict[str, Any]) -> Engine:
    """The engine that ``options`` (a subset of ``_ENGINE_OPTIONS``) ask of ``method``."""
    if not isinstance(method, GramianWeighting) or method.on_features:
        given = ", ".join(sorted(options))
        raise ValueError(
            f"balancing method {name!r} has no option {given}: the Gramian path and its memory "
            "budget belong to the Gramian weightings on the shared parameters (upgrad, mgda, "
            "cagrad, ...)."
        )
    try:
        return Engine(**options)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
