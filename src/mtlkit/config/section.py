"""The base of every config section, and the check of a name against its choices.

Types are strict (``epochs: true`` or ``epochs: 2.5`` is not an integer, a string is not a number)
and numbers finite (``.nan`` and ``.inf`` are refused); unknown keys are refused.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from mtlkit.registry import Registry


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )


def _one_of(choices: Registry | tuple[str, ...], value: str) -> str:
    names = choices.names() if isinstance(choices, Registry) else list(choices)
    if value not in names:
        raise ValueError(f"must be one of: {', '.join(names)}")
    return value
