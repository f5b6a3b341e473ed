"""Assertions the balancing tests share: a checkpoint round trip that resumes bit for bit,
permutation equivariance of a weighting of the Gramian, and the rounding bounds of a Jacobian;
and the small seeded hard-sharing problem the engine's tests train on.

Imported by the ``test_balancing_*`` modules (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlkit.models import HardSharing, classification_head, create_backbone

Module = TypeVar("Module", bound=nn.Module)


def reload(module: nn.Module, into: Module) -> Module:
    """``into`` with ``module``'s state, the way a checkpoint carries it: ``torch.save`` of the
    ``state_dict`` to memory, then ``torch.load(..., weights_only=True)`` and ``load_state_dict``.

    The state is copied: what ``module`` does afterwards does not reach ``into``.
    """
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    into.load_state_dict(torch.load(buffer, weights_only=True))
    return into


def assert_identical(expected: Any, got: Any, what: str = "result") -> None:
    """Bit-for-bit equality of tensors, or of (nested) tuples, lists and dicts of them; ``None``
    must match ``None`` and other values must compare equal."""
    if isinstance(expected, Tensor):
        assert isinstance(got, Tensor), f"{what}: expected a tensor, got {type(got).__name__}"
        assert expected.dtype == got.dtype and expected.shape == got.shape, what
        assert torch.equal(expected, got), f"{what} differs: {expected} != {got}"
    elif isinstance(expected, (tuple, list)):
        assert isinstance(got, (tuple, list)) and len(got) == len(expected), what
        for i, (a, b) in enumerate(zip(expected, got)):
            assert_identical(a, b, f"{what}[{i}]")
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), what
        for key in expected:
            assert_identical(expected[key], got[key], f"{what}[{key!r}]")
    else:
        assert expected == got, f"{what} differs: {expected!r} != {got!r}"


def assert_resumes_exactly(
    original: Module, fresh: Module, step: Callable[[Module, int], Any], steps: int = 3
) -> Module:
    """Load ``original``'s state into ``fresh`` (:func:`reload`), then run ``step(module, i)``
    for ``i < steps`` on both and require bit-identical results at every step.

    Returns the resumed module. The state that a method keeps outside ``state_dict()`` (a
    forgotten buffer, an RNG) makes the two runs diverge, so the check fails.
    """
    resumed = reload(original, fresh)
    for i in range(steps):
        assert_identical(step(original, i), step(resumed, i), f"step {i} after resuming")
    return resumed


def assert_permutation_equivariant(
    weigh: Callable[[Tensor], Tensor],
    jacobian: Tensor,
    perm: Tensor,
    *,
    direction_atol: float | None = None,
    weights_tol: tuple[float, float] | None = None,
) -> None:
    """Permuting the tasks permutes the result: ``weigh`` maps a Gramian to task weights.

    With ``direction_atol`` the direction ``wᵀJ`` must not change (absolute tolerance); with
    ``weights_tol = (rtol, atol)`` the weights of the permuted problem must be the permuted
    weights (ask this only where they are unique: with linearly dependent gradients only the
    direction is determined). At least one of the two is checked.
    """
    assert direction_atol is not None or weights_tol is not None, "nothing to check"
    gramian = jacobian @ jacobian.T
    weights = weigh(gramian)
    permuted = weigh(gramian[perm][:, perm])
    if direction_atol is not None:
        torch.testing.assert_close(
            permuted @ jacobian[perm], weights @ jacobian, atol=direction_atol, rtol=0
        )
    if weights_tol is not None:
        rtol, atol = weights_tol
        torch.testing.assert_close(permuted, weights[perm], rtol=rtol, atol=atol)


def rounding_gamma(jacobian: Tensor) -> float:
    """γ = (P + K)·u for the (K, P) Jacobian's dtype (u its unit roundoff): the relative error
    bound of a dot product of length P plus a sum of K terms (entries of J Jᵀ and of wᵀJ)."""
    k, p = jacobian.shape
    return (p + k) * torch.finfo(jacobian.dtype).eps / 2


def combination_mass(weights: Tensor, jacobian: Tensor) -> float:
    """S = Σⱼ|wⱼ|·‖gⱼ‖, the size the rounding errors of wᵀJ and of Gw scale with."""
    return float(weights.double().abs() @ jacobian.double().norm(dim=1))


def hard_sharing_problem(backbone: str, num_tasks: int, seed: int = 0, **options: Any):
    """A seeded HardSharing model (2-layer heads) and a function running its forward pass on a
    fixed batch of 6: ``forward() -> (features, [K cross-entropy losses])``. ``backbone`` is a
    registered trunk's name (built with ``options``) or a callable ``options → trunk`` for
    8×8 inputs."""
    torch.manual_seed(seed)
    size = (28, 28) if backbone == "lenet" else (8, 8)
    if callable(backbone):
        trunk = backbone(**options)
    else:
        trunk = create_backbone(backbone, (1, *size), **options)
    heads = {
        f"t{k}": classification_head(trunk.out_features, 4, hidden=6) for k in range(num_tasks)
    }
    model = HardSharing(trunk, heads)
    x = torch.randn(6, 1, *size)
    ys = [torch.randint(0, 4, (6,)) for _ in range(num_tasks)]

    def forward():
        z = model.encode(x)
        out = model.decode(z)
        return z, [F.cross_entropy(out[f"t{k}"], y) for k, y in enumerate(ys)]

    return model, forward
