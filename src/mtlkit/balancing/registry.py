"""Every balancing method by name: ``create("upgrad")``, ``available()``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import Any

from mtlkit.balancing.base import Balancer

_REGISTRY: dict[str, type[Balancer]] = {}


def register(name: str):
    """Class decorator that makes a :class:`Balancer` subclass creatable by ``name``."""

    def decorate(cls: type[Balancer]) -> type[Balancer]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"balancing method {name!r} is registered twice.")
        cls.method_name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_methods() -> None:
    """Import every module of ``mtlkit.balancing.methods``: one file per method family."""
    from mtlkit.balancing import methods

    for info in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"{methods.__name__}.{info.name}")


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
    _load_methods()
    return [_describe(name, cls) for name, cls in sorted(_REGISTRY.items())]


def _describe(name: str, cls: type[Balancer]) -> MethodInfo:
    doc = inspect.getdoc(cls) or ""
    summary = doc.splitlines()[0] if doc else ""
    options = {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self", "num_tasks") and p.kind is p.KEYWORD_ONLY
    }
    from mtlkit.balancing.base import LossWeighting

    family = "loss weighting" if issubclass(cls, LossWeighting) else "gradient aggregation"
    return MethodInfo(name, summary, family, cls.needs.name.lower(), options)


def describe(name: str) -> MethodInfo:
    """The description of the method registered as ``name`` (its options and their defaults)."""
    return _describe(name, method_class(name))


def method_class(name: str) -> type[Balancer]:
    """The class registered as ``name``; a clear error lists the known names otherwise."""
    _load_methods()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown balancing method {name!r}; choose one of: {known}.")
    return _REGISTRY[name]


def create(name: str, *, num_tasks: int | None = None, **options: Any) -> Balancer:
    """Create the balancing method registered as ``name`` with its options.

    Args:
        name: a registered method name (see :func:`available`).
        num_tasks: K, the number of tasks; required by methods that keep per-task state.
        **options: the method's own keyword options (see ``mtlkit methods``).

    Raises:
        ValueError: unknown name, unknown option, or an option out of range; the message names it.
    """
    cls = method_class(name)
    allowed = _describe(name, cls).options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) or "none"
        raise ValueError(
            f"balancing method {name!r} has no option {unknown[0]!r}; its options are: "
            f"{allowed_text}."
        )
    return cls(num_tasks=num_tasks, **options)
