"""Sharing architectures by name: how the tasks share parameters (``model.sharing``).

:data:`ARCHITECTURES` maps a name to an :class:`Architecture`; :func:`create_model` builds one
around a trunk and the task heads. Every architecture is a
:class:`~mtlkit.models.MultiTaskModel` that works on any trunk (the cross-stitch and MTAN ones
on a trunk with stages, :mod:`mtlkit.models.stages`), says which parameters are shared
(``shared_parameters``) and whether it has one shared representation
(``shared_representation``, needed by a balancing method on the representation such as
``mgda-ub``). A new architecture is a class plus one ``register`` line.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from mtlkit.models.cross_stitch import CrossStitch
from mtlkit.models.experts import CGC, PLE, DSelectK, MMoE
from mtlkit.models.mtan import MTAN
from mtlkit.models.sharing import HardSharing, MultiTaskModel
from mtlkit.registry import Registry, check_option_names

__all__ = ["ARCHITECTURES", "Architecture", "architecture_options", "create_model"]


@dataclass(frozen=True)
class Architecture:
    """A registered sharing architecture: its class, whose keyword-only constructor arguments
    are its options (with their defaults)."""

    cls: type[MultiTaskModel]

    @property
    def summary(self) -> str:
        """The first paragraph of the class's docstring, on one line."""
        paragraph = (self.cls.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(paragraph.replace("``", "").split())

    @property
    def options(self) -> dict[str, Any]:
        """The options with their defaults."""
        return {
            p.name: p.default
            for p in inspect.signature(self.cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    @property
    def shared_representation(self) -> bool:
        """Whether its tasks read one shared representation (see ``MultiTaskModel``)."""
        return self.cls.shared_representation


ARCHITECTURES: Registry[Architecture] = Registry("sharing architecture")
"""Architecture name → :class:`Architecture`; ``hard`` is the default."""

ARCHITECTURES.register("hard", Architecture(HardSharing))
ARCHITECTURES.register("cross-stitch", Architecture(CrossStitch))
ARCHITECTURES.register("mmoe", Architecture(MMoE))
ARCHITECTURES.register("cgc", Architecture(CGC))
ARCHITECTURES.register("ple", Architecture(PLE))
ARCHITECTURES.register("mtan", Architecture(MTAN))
ARCHITECTURES.register("dselect-k", Architecture(DSelectK))


def architecture_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options of architecture ``name`` with their defaults, updated by ``options``, which
    are checked (those that need no trunk).

    Raises:
        ValueError: unknown name (the message lists the known ones), an option it does not take,
            or a bad option value (the message names the option).
    """
    entry = ARCHITECTURES.get(name)
    known = entry.options
    given = dict(options or {})
    check_option_names(f"sharing {name!r}", given, known)
    check = getattr(entry.cls, "check_options", None)
    if check is not None:
        check(**given)
    return {**known, **given}


def create_model(
    name: str,
    trunk: nn.Module,
    heads: Mapping[str, nn.Module],
    input_shape: Sequence[int],
    **options: Any,
) -> MultiTaskModel:
    """The architecture ``name`` around ``trunk``, with ``heads`` reading ``trunk.out_features``
    features (every architecture gives each task features of the trunk's width).

    Raises:
        ValueError: as :func:`architecture_options`, or options the trunk cannot take (e.g.
            stage indices beyond its stages).
    """
    architecture_options(name, options)
    cls = ARCHITECTURES.get(name).cls
    if "input_shape" in inspect.signature(cls.__init__).parameters:
        return cls(trunk, heads, tuple(input_shape), **options)
    return cls(trunk, heads, **options)
