"""Private tensor and state helpers shared by the balancing methods.

* :func:`check_jacobian`, the input check of the methods that read the whole Jacobian (the
  Gramian's check and the working dtype live with the solvers, in
  :mod:`mtlkit.balancing.solvers.gramian`);
* :class:`_SeededRandomness`, a mixin that gives a method its own seeded ``torch.Generator`` (one
  per device type, so random draws happen where the data lives) and puts the generators' states in
  ``state_dict()`` through ``get_extra_state``, and :func:`random_orders` drawn from it;
* :func:`read_extra_state`, the check of a loaded ``_extra_state``, and :func:`adam_step_`, a tiny
  Adam on plain buffers for methods with an internal optimiser;
* :func:`simplex_state`, the kept simplex weights of MoDo and SDMGrad (uniform at first), and
  :func:`preference_vector` / :func:`preference_like`, the preference vector of the
  scalarisations (COSMOS, PBI).

The checks of the methods' options live in :mod:`mtlkit.balancing.options`. Nothing here is
registered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.options import check_seed, check_weights


def check_jacobian(jacobian: Tensor) -> int:
    """Check that ``jacobian`` is a (K, P) floating tensor; return K."""
    if jacobian.dim() != 2 or jacobian.shape[0] == 0:
        raise ValueError(
            f"expected a (K, P) Jacobian with K >= 1, got shape {tuple(jacobian.shape)}."
        )
    if not jacobian.is_floating_point():
        raise ValueError(f"expected a floating-point Jacobian, got dtype {jacobian.dtype}.")
    return jacobian.shape[0]


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
        method = getattr(self, "method_name", type(self).__name__)
        self.seed = check_seed(method, seed)
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


def simplex_state(state: Tensor | None, like: Tensor) -> Tensor:
    """A method's kept weights on the simplex in ``like``'s dtype and device; uniform where there
    are none yet or the number of tasks (``like``'s last dimension) differs."""
    k = like.shape[-1]
    if state is None or state.shape != (k,):
        return torch.full((k,), 1.0 / k, dtype=like.dtype, device=like.device)
    return state.to(dtype=like.dtype, device=like.device)


def preference_vector(
    method: str, option: str, value: Sequence[float] | None, num_tasks: int | None
) -> Tensor | None:
    """A checked preference vector (one number ≥ 0 per task, not all 0) as a float64 tensor."""
    if value is None:
        return None
    values = check_weights(method, option, value)
    if num_tasks is not None and len(values) != num_tasks:
        raise ValueError(
            f"{method}: {option} has {len(values)} entries but there are {num_tasks} tasks."
        )
    return torch.tensor(values, dtype=torch.float64)


def preference_like(method: str, preference: Tensor | None, losses: Tensor) -> Tensor:
    """``preference`` (uniform 1/K where ``None``) in the losses' dtype and device."""
    k = losses.numel()
    if preference is None:
        return torch.full((k,), 1.0 / k, dtype=losses.dtype, device=losses.device)
    if preference.numel() != k:
        raise ValueError(f"{method}: weights has {preference.numel()} entries, got {k} losses.")
    return preference.to(dtype=losses.dtype, device=losses.device)


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
