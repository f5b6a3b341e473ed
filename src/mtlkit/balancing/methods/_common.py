"""Private tensor and state helpers shared by the balancing methods.

* :func:`check_jacobian`, the input check of the methods that read the whole Jacobian (the
  Gramian's check and the working dtype live with the solvers, in
  :mod:`mtlkit.balancing.solvers.gramian`);
* :class:`_SeededRandomness`, a mixin that gives a method its own seeded ``torch.Generator`` (one
  per device type, so random draws happen where the data lives) and puts the generators' states in
  ``state_dict()`` through ``get_extra_state``, and :func:`random_orders` drawn from it;
* :func:`read_extra_state`, the check of a loaded ``_extra_state``, and :func:`adam_step_`, a tiny
  Adam on plain buffers for methods with an internal optimiser.

The checks of the methods' options live in :mod:`mtlkit.balancing.options`. Nothing here is
registered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mtlkit.balancing.options import check_seed


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
