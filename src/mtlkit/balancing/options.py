"""Validators for the options of the balancing methods, shared by every method.

Each checker takes the method's registered name and the option's name, and returns the value in
its working type or raises a ``ValueError`` whose message names the method, the option, the
allowed values and the value given, e.g. ``"dwa: temperature must be a number in (0.0, inf],
got 0.0."``. Numbers are ``int`` or ``float`` (never ``bool``) and must be finite.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "check_choice",
    "check_int",
    "check_number",
    "check_numbers",
    "check_seed",
    "check_weights",
    "per_task_values",
    "require_num_tasks",
]


def require_num_tasks(method: str, num_tasks: int | None, what: str = "per-task state") -> int:
    """``num_tasks`` for a method that keeps ``what``, or a ValueError telling how to fix it."""
    if num_tasks is None:
        raise ValueError(
            f"{method} keeps {what} and needs the number of tasks: pass num_tasks=K "
            f"(e.g. create({method!r}, num_tasks=2))."
        )
    return num_tasks


def check_number(
    method: str,
    option: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """``value`` as a finite float inside the given range, or a ValueError naming the option.

    ``low``/``high`` (``None``: unbounded) are closed ends unless ``low_inclusive`` /
    ``high_inclusive`` is false; e.g. ``low=0.0, high=1.0, high_inclusive=False`` is [0, 1).
    """
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    allowed = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    number = float(value) if is_number else math.nan
    ok = math.isfinite(number)
    if ok and low is not None:
        ok = number >= low if low_inclusive else number > low
    if ok and high is not None:
        ok = number <= high if high_inclusive else number < high
    if not ok:
        raise ValueError(f"{method}: {option} must be a number in {allowed}, got {value!r}.")
    return number


def check_numbers(
    method: str,
    option: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
) -> list[float]:
    """A sequence of finite numbers as a list of floats, each entry checked by
    :func:`check_number` (the error names it, e.g. ``weights[1]``)."""
    if isinstance(value, (str, bytes)):
        values = None
    else:
        try:
            values = list(value)
        except TypeError:
            values = None
    if values is None:
        raise ValueError(f"{method}: {option} must be a sequence of numbers, got {value!r}.")
    return [
        check_number(method, f"{option}[{k}]", v, low=low, high=high) for k, v in enumerate(values)
    ]


def check_weights(method: str, option: str, value: Any) -> list[float]:
    """One finite number ≥ 0 per task, not all 0 (fixed task weights, a preference vector)."""
    values = check_numbers(method, option, value, low=0.0)
    if not any(v > 0 for v in values):
        raise ValueError(
            f"{method}: {option} must hold one number >= 0 per task, not all 0; got {value!r}."
        )
    return values


def check_int(method: str, option: str, value: Any, *, low: int = 0) -> int:
    """``value`` as an int ≥ ``low``, or a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{method}: {option} must be an integer >= {low}, got {value!r}.")
    return value


def check_seed(method: str, seed: Any) -> int:
    """A seed for ``torch.Generator.manual_seed``: an integer in [0, 2**63)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"{method}: seed must be an integer in [0, 2**63), got {seed!r}.")
    return seed


def check_choice(method: str, option: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, or a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{method}: {option} must be one of {list(choices)}, got {value!r}.")
    return value


def per_task_values(
    method: str, option: str, value: Any, num_tasks: int, *, low: float | None = None
) -> list[float]:
    """A number (broadcast to every task) or one number per task, as a list of K floats."""
    values = [value] * num_tasks if isinstance(value, (int, float)) else value
    try:
        values = list(values)
    except TypeError:
        raise ValueError(
            f"{method}: {option} must be a number or one number per task, got {value!r}."
        ) from None
    if len(values) != num_tasks:
        raise ValueError(
            f"{method}: {option} has {len(values)} entries but there are {num_tasks} tasks."
        )
    return check_numbers(method, option, values, low=low)
