"""The promises of the gradient aggregators, in float32 and float64, at gradient-norm spreads of
1, 10² and 10⁴ (a regression loss beside a classification loss differs by 100× or more).

Every tolerance is derived, per case, from two sources and nothing else:

* rounding: the Jacobian's dtype (unit roundoff u). The Gramian's entries carry errors
  ``|δGᵢⱼ| ≤ γ·‖gᵢ‖‖gⱼ‖`` and the update ``d = wᵀJ`` errors ``≤ γ·Σⱼ|wⱼ|‖gⱼ‖`` with
  ``γ = (P + K)·u`` (the standard bound for dot products of length P and sums of K terms);
* the solver: the interior point stops at a relative duality gap of 1e-12, so the direction is
  within ``√(2·1e-12) ≈ 1.5e-6`` of the exact one relative to its norm; Newton and the closed
  forms reach residuals of 1e-12.

The properties are measured in float64 on the float32 Jacobian itself (not its Gramian).
"""

from __future__ import annotations

import pytest
import torch

from balancing_checks import combination_mass as _mass
from balancing_checks import rounding_gamma as _gamma
from mtlkit.balancing import create
from mtlkit.balancing.methods.aligned_mtl import balance_transformation

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPREADS = [1.0, 1e2, 1e4]
DTYPES = [torch.float32, torch.float64]
COLUMNS = 64
DIRECTION_RTOL = 1.5e-6
"""√(2·1e-12): the direction's relative accuracy at the interior point's duality gap."""


def _jacobians(spread: float, dtype: torch.dtype, per_k: int = 2):
    """Seeded (K, 64) Jacobians, K = 2..6, rows scaled by logspace over ``spread``: ``per_k``
    draws of each (K, spread, dtype), 60 per method and promise (``benchmarks/guarantees.py``
    measures the worst case over many more)."""
    gen = torch.Generator().manual_seed(int(spread))
    for k in range(2, 7):
        scales = torch.logspace(-1, 1, k, dtype=torch.float64) ** (torch.tensor(spread).log10() / 2)
        for _ in range(per_k):
            jac = torch.randn(k, COLUMNS, generator=gen, dtype=torch.float64) * scales[:, None]
            yield jac.to(dtype)


def _direction(name: str, jac: torch.Tensor, **options) -> tuple[torch.Tensor, torch.Tensor]:
    weights = create(name, **options).weights_from_gramian(jac @ jac.T)
    assert weights.dtype == jac.dtype and bool(torch.isfinite(weights).all())
    return weights, (weights @ jac).double()


cases = pytest.mark.parametrize(
    ("spread", "dtype"), [(s, d) for s in SPREADS for d in DTYPES], ids=lambda v: str(v)
)


@cases
@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_dual_cone_methods_never_conflict(name, spread, dtype):
    """cos(gₖ, d) ≥ 0 for every task k, up to rounding and the solver's accuracy."""
    for jac in _jacobians(spread, dtype):
        w, d = _direction(name, jac)
        true = jac.double()
        cos = (true @ d) / (true.norm(dim=1) * d.norm())
        bound = 2 * _gamma(jac) * _mass(w, jac) / float(d.norm()) + DIRECTION_RTOL
        assert float(cos.min()) >= -bound


@cases
def test_mgda_is_a_common_descent_direction(spread, dtype):
    """gₖᵀd ≥ ‖d‖² for every task (KKT of the min-norm point), relative to ‖gₖ‖‖d‖."""
    for jac in _jacobians(spread, dtype):
        w, d = _direction("mgda", jac)
        true = jac.double()
        norms, size, mass = true.norm(dim=1), float(d.norm()), _mass(w, jac)
        margin = (true @ d - size**2) / (norms * size)
        rounding = 2 * _gamma(jac) * mass * (1 + mass / norms) / size
        solver = DIRECTION_RTOL * (1 + 3 * size / norms)
        assert bool((margin >= -(rounding + solver)).all())


@cases
def test_cagrad_stays_in_its_ball(spread, dtype):
    """‖d − g₀‖ ≤ c‖g₀‖ (rescale=0: the update of Algorithm 1)."""
    c = 0.4
    for jac in _jacobians(spread, dtype, per_k=1):  # K > 2 costs a few interior-point runs
        k = jac.shape[0]
        w, d = _direction("cagrad", jac, c=c, rescale=0)
        true = jac.double()
        g0 = true.mean(0)
        mean = torch.full((k,), 1.0 / k, dtype=torch.float64)
        gamma = _gamma(jac)
        # the ball solved for is that of the rounded Gramian: its radius and ‖Jᵀ(β − u)‖ differ
        # from the true ones by at most √γ·S (S the mass of the combination); plus d's rounding.
        slack = gamma**0.5 * (_mass(w.double() - mean, jac) + c * _mass(mean, jac))
        slack += gamma * _mass(w, jac)
        assert float((d - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-9) + slack


@cases
def test_nash_mtl_meets_its_bargaining_condition(spread, dtype):
    """αₖ·gₖᵀd = 1 for every task (max_norm=0: without the clipping)."""
    for jac in _jacobians(spread, dtype):
        alpha, d = _direction("nash-mtl", jac, max_norm=0.0)
        true = jac.double()
        a = alpha.double()
        products = a * (true @ d)
        # Newton's residual (1e-12), its ridge (1e-14 relative) and the rounding of G and d
        rounding = 2 * _gamma(jac) * float((a * true.norm(dim=1)).max()) * _mass(alpha, jac)
        assert float((products - 1).abs().max()) <= rounding + 1e-10


@cases
@pytest.mark.parametrize("name", ["imtl-g", "config"])
def test_equal_projection_methods_project_equally(name, spread, dtype):
    """IMTL-G: d's projections uₖᵀd onto the unit task gradients are equal; ConFIG: so are its
    cosines. Relative to their mean, up to the rounding of the cosine matrix C (γ·‖C⁻¹1‖₁) and
    of d."""
    for jac in _jacobians(spread, dtype):
        w, d = _direction(name, jac)
        true = jac.double()
        units = true / true.norm(dim=1, keepdim=True)
        projections = units @ d
        mean = float(projections.mean())
        assert mean > 0
        beta = torch.linalg.solve(units @ units.T, torch.ones(jac.shape[0], dtype=torch.float64))
        rounding = 2 * _gamma(jac) * (float(beta.abs().sum()) + _mass(w, jac) / mean)
        assert float((projections / mean - 1).abs().max()) <= rounding + 1e-12


@cases
def test_aligned_mtl_balances_every_singular_value_to_one_level(spread, dtype):
    """Bᵀ G B = λ·P (P a projector): the balanced gradients' Gramian, measured with the *true*
    Gramian, has all its non-zero eigenvalues equal. The rounded Gramian G + E (|Eᵢⱼ| ≤ γ‖gᵢ‖‖gⱼ‖)
    moves them by at most ‖B E B‖ ≤ γ·K·‖BN‖² (N = diag of the gradient norms), and the float64
    eigendecomposition B is built from by ‖B‖²·K·eps·‖G‖ (its backward error)."""
    for jac in _jacobians(spread, dtype):
        k = jac.shape[0]
        balance = balance_transformation(jac @ jac.T)
        true = jac.double()
        balanced = balance.T @ (true @ true.T) @ balance
        values = torch.linalg.eigvalsh(balanced)
        level = float(values.max())
        norms = torch.diag(true.norm(dim=1))
        moved = _gamma(jac) * k * float(torch.linalg.matrix_norm(balance.T @ norms, ord=2)) ** 2
        eigh_error = (
            k
            * torch.finfo(torch.float64).eps
            * float(torch.linalg.matrix_norm(true @ true.T, ord=2))
        )
        moved += eigh_error * float(torch.linalg.matrix_norm(balance, ord=2)) ** 2
        kept = values[values > 0.5 * level]
        assert float(kept.max() - kept.min()) <= 2 * moved + 1e-12 * level
        assert bool((values[values <= 0.5 * level].abs() <= moved + 1e-12 * level).all())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["aligned-mtl", "imtl-g", "config"])
def test_a_task_with_a_zero_gradient_changes_nothing(name, dtype):
    """A task with no labelled row in the batch has an exactly zero gradient. For these methods
    the update is then what it would be without that task: it sets no scale, takes no weight.
    (Not so by definition for MGDA — 0 is then in the hull — nor for the means of UPGrad and
    DualProj, which count it.) Aligned-MTL used to rescale everything to the rounding noise of
    that task's null eigenvalue, in ~8 % of such cases."""
    gen = torch.Generator().manual_seed(7)
    for trial in range(60):
        k = 2 + trial % 6
        jac = torch.randn(k, 30, generator=gen, dtype=torch.float64).to(dtype)
        where = trial % (k + 1)
        zero = torch.zeros(1, 30, dtype=dtype)
        with_zero = torch.cat([jac[:where], zero, jac[where:]])
        _, d = _direction(name, jac)
        _, d_zero = _direction(name, with_zero)
        scale = float(jac.double().norm(dim=1).max())
        tol = 2 * _gamma(with_zero) * k * scale + DIRECTION_RTOL * float(d.norm())
        assert float((d_zero - d).norm()) <= tol, (name, trial)


def test_aligned_mtl_keeps_a_small_task_beside_a_nearly_parallel_pair():
    """Float32: two gradients 3e-4 rad apart (their difference is below float32's resolution)
    and an orthogonal task 10⁴ times smaller. The pair counts once; the small task is a real
    direction and keeps its projection (the official rule, relative to λ_max, dropped it)."""
    e = torch.eye(8, dtype=torch.float64)
    angle = torch.tensor(3e-4, dtype=torch.float64)
    jac = torch.stack([e[0], angle.cos() * e[0] + angle.sin() * e[1], 1e-4 * e[2]])
    _, d = _direction("aligned-mtl", jac.float())
    small = jac[2] / jac[2].norm()
    torch.testing.assert_close(float(d @ small), 1e-4, rtol=1e-4, atol=0)
