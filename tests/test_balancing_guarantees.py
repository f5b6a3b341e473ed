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

from mtlkit.balancing import create

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


def _gamma(jac: torch.Tensor) -> float:
    """γ = (P + K)·u for the Jacobian's dtype."""
    k, p = jac.shape
    return (p + k) * torch.finfo(jac.dtype).eps / 2


def _mass(weights: torch.Tensor, jac: torch.Tensor) -> float:
    """S = Σⱼ|wⱼ|·‖gⱼ‖, the size the rounding errors of wᵀJ and of Gw scale with."""
    return float(weights.double().abs() @ jac.double().norm(dim=1))


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
