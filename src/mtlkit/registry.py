"""A name → entry table: what the configuration and the command line choose from.

Backbones, benchmarks and task types each have one (balancing methods have their own, richer
registry in :mod:`mtlkit.balancing.registry`). Adding an entry is one line beside its code::

    BACKBONES.register("resnet", make_resnet)

and the config, ``mtlkit`` and the error messages pick it up from there: no second list to edit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownNameError", "check_option_names"]

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that is not registered; the message lists the registered ones."""


class Registry(Generic[T]):
    """Entries of one kind (``kind`` names it in error messages), in registration order.

    Args:
        kind: what the entries are, e.g. ``"backbone"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T] | T:
        """Register ``entry`` as ``name``; without ``entry``, return a decorator that does.

        Raises:
            ValueError: ``name`` is already taken by another entry.
        """

        def add(value: T) -> T:
            if name in self._entries and self._entries[name] is not value:
                raise ValueError(f"{self.kind} {name!r} is registered twice.")
            self._entries[name] = value
            return value

        return add if entry is None else add(entry)

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            UnknownNameError: no such entry; the message lists the known names.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}."
            ) from None

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def check_option_names(owner: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Refuse an option that the entry ``owner`` (e.g. ``"backbone 'mlp'"``) does not take.

    Raises:
        ValueError: naming the first unknown option and listing the ``known`` ones.
    """
    known = list(known)
    unknown = [option for option in given if option not in known]
    if unknown:
        raise ValueError(
            f"{owner} takes no option {unknown[0]!r}; its options: {', '.join(known) or 'none'}."
        )
