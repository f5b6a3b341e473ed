"""Shared private helpers of the projection and closed-form gradient aggregators.

* :class:`_SeededRandomness`: a mixin that gives a method its own seeded ``torch.Generator`` (one
  per device type, so random draws happen where the data lives) and puts the generators' states in
  ``state_dict()`` through ``get_extra_state``;
* input checks and the dtype the linear algebra runs in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_MAX_SEED = 2**63 - 1


def check_seed(seed: Any) -> int:
    """Validate a ``seed`` option (a non-negative integer)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}.")
    return seed


def check_unit_interval(name: str, value: Any, *, closed_right: bool = True) -> float:
    """Validate a float option in [0, 1] (or [0, 1) when ``closed_right`` is false)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    ok = 0.0 <= number <= 1.0 if closed_right else 0.0 <= number < 1.0
    if isinstance(value, bool) or not ok:
        bracket = "]" if closed_right else ")"
        raise ValueError(f"{name} must be a number in [0, 1{bracket}, got {value!r}.")
    return number


def require_num_tasks(method: str, num_tasks: int | None, what: str) -> int:
    """Refuse ``num_tasks=None`` for a method that keeps per-task state."""
    if num_tasks is None:
        raise ValueError(
            f"{method} keeps {what}, so it must know the number of tasks: pass num_tasks=K "
            f"(e.g. create({method!r}, num_tasks=2))."
        )
    return num_tasks


def check_gramian(gramian: Tensor) -> int:
    """Check that ``gramian`` is a square (K, K) floating tensor; return K."""
    if gramian.dim() != 2 or gramian.shape[0] != gramian.shape[1] or gramian.shape[0] == 0:
        raise ValueError(
            f"expected a (K, K) Gramian with K >= 1, got shape {tuple(gramian.shape)}."
        )
    if not gramian.is_floating_point():
        raise ValueError(f"expected a floating-point Gramian, got dtype {gramian.dtype}.")
    return gramian.shape[0]


def check_jacobian(jacobian: Tensor) -> int:
    """Check that ``jacobian`` is a (K, P) floating tensor; return K."""
    if jacobian.dim() != 2 or jacobian.shape[0] == 0:
        raise ValueError(
            f"expected a (K, P) Jacobian with K >= 1, got shape {tuple(jacobian.shape)}."
        )
    if not jacobian.is_floating_point():
        raise ValueError(f"expected a floating-point Jacobian, got dtype {jacobian.dtype}.")
    return jacobian.shape[0]


def solve_dtype(tensor: Tensor) -> torch.dtype:
    """The dtype to do linear algebra in: the input's, raised to float32 for half types."""
    if tensor.dtype in (torch.float32, torch.float64):
        return tensor.dtype
    return torch.float32


def random_orders(num_tasks: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """For every task i, a uniformly random order of the other tasks: a (K, K-1) index tensor.

    Row i is ``argsort`` of K i.i.d. uniform keys with key i pushed last, so it is a uniformly
    random permutation of ``{0..K-1} minus {i}``; drawn on ``device`` with no host round trip.
    """
    keys = torch.rand(num_tasks, num_tasks, generator=generator, device=device)
    keys.fill_diagonal_(2.0)
    return keys.argsort(dim=1)[:, : num_tasks - 1]


class _SeededRandomness:
    """Mixin for a ``Balancer`` that draws random numbers from its own seeded generators.

    One ``torch.Generator`` per device type (``cpu``, ``cuda``, ...), created on first use and
    seeded with ``seed``; their states travel in ``state_dict()`` (``get_extra_state``), so a run
    resumed from a checkpoint draws exactly the numbers it would have drawn. Subclasses that keep
    further lazily shaped state extend :meth:`get_extra_state` / :meth:`set_extra_state`.
    """

    def _init_randomness(self, seed: int) -> None:
        self.seed = check_seed(seed)
        self._generators: dict[str, torch.Generator] = {}
        self._pending_states: dict[str, Tensor] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        key = device.type
        generator = self._generators.get(key)
        if generator is None:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.seed)
            pending = self._pending_states.pop(key, None)
            if pending is not None:
                generator.set_state(pending)
            self._generators[key] = generator
        return generator

    def get_extra_state(self) -> dict[str, Any]:
        states = dict(self._pending_states)
        states.update({key: gen.get_state() for key, gen in self._generators.items()})
        return {"rng": states}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._generators = {}
        self._pending_states = {
            str(key): value.detach().to(device="cpu", dtype=torch.uint8).clone()
            for key, value in state.get("rng", {}).items()
        }
