"""Private helpers shared by the adaptive loss weightings: option checks and a tiny Adam.

Nothing here is registered; the module only exists so that the method files stay short.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def require_num_tasks(method: str, num_tasks: int | None) -> int:
    """``num_tasks`` for a method with per-task state, or a ValueError telling how to fix it."""
    if num_tasks is None:
        raise ValueError(
            f"{method} keeps per-task state and needs the number of tasks: pass num_tasks=K "
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
    """``value`` as a finite float inside the given range, or a ValueError naming the option."""
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
    return [check_number(method, f"{option}[{k}]", v, low=low) for k, v in enumerate(values)]


def read_extra_state(method: str, state: Any, keys: tuple[str, ...]) -> Mapping[str, Any]:
    """Check that a loaded ``_extra_state`` is the dict this method wrote."""
    if not isinstance(state, Mapping) or set(state) != set(keys):
        found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(
            f"{method}: the checkpoint's extra state has keys {found}, expected {sorted(keys)}; "
            "it was written by another method or version."
        )
    return state


@torch.no_grad()
def adam_step_(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: int,
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> None:
    """One in-place Adam step (``torch.optim.Adam``'s update, L2 ``weight_decay`` included).

    ``step`` is the 1-based index of this step. Kept here, on plain buffers, so that a method's
    internal optimiser moves with ``.to(device)`` and travels in ``state_dict()``.
    """
    beta1, beta2 = betas
    if weight_decay != 0.0:
        grad = grad + weight_decay * param
    exp_avg.lerp_(grad, 1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    bias_correction1 = 1.0 - beta1**step
    bias_correction2 = 1.0 - beta2**step
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
