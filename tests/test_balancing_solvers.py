"""The solvers of ``mtlkit.balancing.solvers`` against quadprog/scipy and their KKT conditions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlkit.balancing.solvers import ball
from mtlkit.balancing.solvers.ball import max_min_in_ball
from mtlkit.balancing.solvers.dual_cone import dual_cone_weights
from mtlkit.balancing.solvers.fair import alpha_fair_weights
from mtlkit.balancing.solvers.gramian import normalize_gramian
from mtlkit.balancing.solvers.min_norm import min_norm_point
from mtlkit.balancing.solvers.nonneg_qp import solve_nonneg_qp
from mtlkit.balancing.solvers.simplex import project_simplex


@pytest.fixture
def scipy_optimize():
    """scipy (a reference only): the tests that compare against it skip without it."""
    return pytest.importorskip("scipy.optimize")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randn(seed: int, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Seeded normal draws from a private generator (never the global RNG)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _psd(rng: np.random.Generator, k: int, rank: int, scale: float = 1.0) -> np.ndarray:
    a = rng.standard_normal((k, rank)) * scale
    return a @ a.T


def _quadprog(h: np.ndarray, c: np.ndarray, simplex: bool) -> np.ndarray:
    """Reference: min ½xᵀHx + cᵀx s.t. x ≥ 0 [, Σx = 1] (H must be positive definite)."""
    quadprog = pytest.importorskip("quadprog")  # the calling test skips without it
    k = h.shape[0]
    s = np.trace(h) / k  # quadprog is only accurate on well-scaled data
    if simplex:
        constraints = np.hstack([np.ones((k, 1)), np.eye(k)])
        bounds = np.hstack([[1.0], np.zeros(k)])
        return quadprog.solve_qp(h / s, -c / s, constraints, bounds, meq=1)[0]
    return quadprog.solve_qp(h / s, -c / s, np.eye(k), np.zeros(k))[0]


def _kkt_violation(h: np.ndarray, c: np.ndarray, x: np.ndarray, simplex: bool) -> float:
    """Largest violation of the KKT conditions, relative to the data's scale."""
    grad = h @ x + c
    scale = (np.abs(grad).max() + np.trace(h) / len(x)) * max(1.0, np.abs(x).max()) + 1e-300
    if simplex:
        support = x > 1e-7 * x.max()
        multiplier = -grad[support].mean()
        grad = grad + multiplier
    viol = [
        -x.min() / max(1.0, np.abs(x).max()),
        -grad.min() / scale,
        np.abs(x * grad).max() / scale,
    ]
    if simplex:
        viol.append(abs(x.sum() - 1.0))
    return max(viol)


# --------------------------------------------------------------------------------------------
# solve_nonneg_qp
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("simplex", [False, True])
def test_nonneg_qp_matches_quadprog_on_positive_definite_problems(simplex):
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = int(rng.integers(1, 25))
        h = _psd(rng, k, int(rng.integers(1, k + 3)), 10 ** rng.uniform(-4, 4))
        h += 1e-3 * np.trace(h) / k * np.eye(k)  # quadprog needs a well-conditioned PD H
        c = rng.standard_normal(k) * np.trace(h) / k
        x = solve_nonneg_qp(torch.tensor(h), torch.tensor(c), simplex=simplex).numpy()
        ref = _quadprog(h, c, simplex)
        np.testing.assert_allclose(x, ref, rtol=0, atol=1e-5 * (1 + np.abs(ref).max()))
        assert _kkt_violation(h, c, x, simplex) < 1e-8


@pytest.mark.parametrize("simplex", [False, True])
def test_nonneg_qp_kkt_on_rank_deficient_problems(simplex):
    """quadprog cannot take a singular H; the KKT conditions certify optimality instead."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        k = int(rng.integers(2, 30))
        h = _psd(rng, k, int(rng.integers(1, k)), 10 ** rng.uniform(-4, 4))
        if simplex:
            c = rng.standard_normal(k) * np.sqrt(np.trace(h) / k) * rng.integers(0, 2)
        else:  # bounded below: c = Hz + (something ≥ 0)
            c = h @ rng.standard_normal(k) + np.abs(rng.standard_normal(k)) * np.trace(h) / k
        x = solve_nonneg_qp(torch.tensor(h), torch.tensor(c), simplex=simplex).numpy()
        assert _kkt_violation(h, c, x, simplex) < 1e-7


@pytest.mark.parametrize("simplex", [False, True])
def test_nonneg_qp_closed_forms_for_one_and_two_variables(simplex):
    """K ≤ 2 (two tasks, the common case) is solved in closed form: same answers as quadprog."""
    rng = np.random.default_rng(10)
    for _ in range(80):
        k = int(rng.integers(1, 3))
        h = _psd(rng, k, int(rng.integers(1, 3)), 10 ** rng.uniform(-3, 3))
        h += 1e-6 * np.trace(h) / k * np.eye(k)
        c = rng.standard_normal(k) * np.trace(h) / k
        x = solve_nonneg_qp(torch.tensor(h), torch.tensor(c), simplex=simplex).numpy()
        ref = _quadprog(h, c, simplex)
        np.testing.assert_allclose(x, ref, rtol=0, atol=1e-6 * (1 + np.abs(ref).max()))
    # Degenerate: identical rows on the simplex split evenly; a zero Hessian in the box stays at 0.
    ones = torch.ones(2, 2, dtype=torch.float64)
    torch.testing.assert_close(
        solve_nonneg_qp(ones, torch.zeros(2, dtype=torch.float64), simplex=True),
        torch.full((2,), 0.5, dtype=torch.float64),
    )


def test_nonneg_qp_batches_like_a_loop_and_keeps_device():
    rng = np.random.default_rng(2)
    hs = torch.tensor(np.stack([_psd(rng, 6, 4) + 0.1 * np.eye(6) for _ in range(5)]))
    cs = torch.tensor(rng.standard_normal((5, 6)))
    batched = solve_nonneg_qp(hs, cs, simplex=True)
    looped = torch.stack([solve_nonneg_qp(h, c, simplex=True) for h, c in zip(hs, cs)])
    torch.testing.assert_close(batched, looped, rtol=0, atol=1e-9)
    shared = solve_nonneg_qp(hs[0], cs)  # one H, five linear terms
    looped = torch.stack([solve_nonneg_qp(hs[0], c) for c in cs])
    torch.testing.assert_close(shared, looped, rtol=0, atol=1e-9)
    assert batched.device == hs.device and batched.dtype == torch.float64


def test_nonneg_qp_rejects_non_square_input():
    with pytest.raises(ValueError, match="square"):
        solve_nonneg_qp(torch.ones(2, 3), torch.ones(2))


# --------------------------------------------------------------------------------------------
# min_norm_point (MGDA)
# --------------------------------------------------------------------------------------------


def _jacobian(rng: np.random.Generator, k: int, rank: int, p: int = 40) -> np.ndarray:
    scales = 10 ** rng.uniform(-2, 2, size=(k, 1))
    return (rng.standard_normal((k, rank)) @ rng.standard_normal((rank, p))) * scales


@pytest.mark.slow
def test_min_norm_point_is_the_min_norm_element_of_the_hull():
    rng = np.random.default_rng(3)
    for _ in range(20):
        k = int(rng.integers(1, 20))
        jac = _jacobian(rng, k, int(rng.integers(1, k + 3)))
        g = jac @ jac.T
        w = min_norm_point(torch.tensor(g)).numpy()
        assert w.min() >= 0 and abs(w.sum() - 1) < 1e-12
        gw, value = g @ w, w @ g @ w
        scale = np.trace(g) / k
        # KKT of min_{w∈Δ} wᵀGw: (Gw)ᵢ ≥ wᵀGw for all i, with equality on the support.
        assert (gw - value).min() >= -1e-7 * scale
        support = w > 1e-6
        assert np.abs(gw[support] - value).max() <= 1e-7 * scale
        # Nothing in the hull is shorter: compare with random simplex points and the vertices.
        others = np.vstack([rng.dirichlet(np.ones(k), size=200), np.eye(k)])
        assert value <= np.einsum("ni,ij,nj->n", others, g, others).min() + 1e-10 * scale


@pytest.mark.slow
def test_min_norm_point_matches_quadprog():
    rng = np.random.default_rng(4)
    for _ in range(20):
        k = int(rng.integers(2, 15))
        jac = _jacobian(rng, k, k + 5)  # full rank: unique minimiser
        g = jac @ jac.T
        w = min_norm_point(torch.tensor(g)).numpy()
        ref = _quadprog(g + 1e-12 * np.trace(g) * np.eye(k), np.zeros(k), simplex=True)
        if np.linalg.cond(g) < 1e6:  # quadprog is accurate there
            np.testing.assert_allclose(w, ref, rtol=0, atol=1e-5)
        # Otherwise quadprog's own error shows: ours is never worse.
        assert w @ g @ w <= ref @ g @ ref * (1 + 1e-10)


def test_min_norm_point_of_identical_rows_is_near_symmetric_and_of_one_row_is_one():
    """Identical rows make the weights non-unique (the direction is not): the interior point
    approaches the symmetric analytic centre, up to ~1e-5 of drift along the flat direction."""
    row = _randn(20, 1, 30)
    jac = torch.cat([row.repeat(3, 1), _randn(21, 2, 30)])
    w = min_norm_point(jac @ jac.T)
    assert float(w[:3].max() - w[:3].min()) < 1e-4
    w_all = min_norm_point(row.repeat(4, 1) @ row.repeat(4, 1).T)
    torch.testing.assert_close(
        w_all, torch.full((4,), 0.25, dtype=torch.float64), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(w_all @ row.repeat(4, 1), row[0])
    torch.testing.assert_close(min_norm_point(row @ row.T), torch.ones(1, dtype=torch.float64))


def test_min_norm_point_handles_float32_gramians_of_long_jacobians():
    """A float32 Gramian of a long Jacobian is indefinite at ~1e-6: the solver must cope."""
    jac = _randn(22, 12, 3, dtype=torch.float32) @ _randn(23, 3, 200_000, dtype=torch.float32)
    # rank 3 < K: 0 is in the hull
    w = min_norm_point(jac @ jac.T)
    assert torch.isfinite(w).all() and abs(float(w.sum()) - 1) < 1e-9
    d = w.to(torch.float64) @ jac.double()
    assert float(d.norm()) <= 1e-3 * float(jac.double().norm(dim=1).min())


# --------------------------------------------------------------------------------------------
# dual_cone_weights (UPGrad, DualProj)
# --------------------------------------------------------------------------------------------


def test_dual_cone_weights_match_quadprog_and_project_onto_the_dual_cone():
    quadprog = pytest.importorskip("quadprog")
    rng = np.random.default_rng(5)
    for _ in range(20):
        k = int(rng.integers(1, 15))
        jac = _jacobian(rng, k, int(rng.integers(1, k + 3)))
        g = jac @ jac.T
        g = g / np.trace(g) + 1e-4 * np.eye(k)
        u = np.abs(rng.standard_normal((3, k)))
        v = dual_cone_weights(torch.tensor(g), torch.tensor(u)).numpy()
        for ui, vi in zip(u, v):
            ref = quadprog.solve_qp(g, np.zeros(k), np.eye(k), ui)[0]
            np.testing.assert_allclose(vi, ref, rtol=0, atol=1e-5 * (1 + np.abs(ref).max()))
            assert (vi - ui).min() >= -1e-12
            # KKT: Gv ≥ 0, zero where v > u.
            gv = g @ vi
            assert gv.min() >= -1e-9 and np.abs(gv * (vi - ui)).max() <= 1e-9


def test_dual_cone_weights_without_ridge_give_a_non_conflicting_direction():
    rng = np.random.default_rng(6)
    for _ in range(20):
        k = int(rng.integers(2, 15))
        jac = _jacobian(rng, k, int(rng.integers(1, k + 3)))
        g = jac @ jac.T
        v = dual_cone_weights(torch.tensor(g), torch.eye(k, dtype=torch.float64)).numpy()
        conflicts = jac @ (v @ jac).T  # (K, K): task i's improvement for each projected row
        assert conflicts.min() >= -1e-8 * np.trace(g) / k


_PROJECTION_TOL = 2e-6
"""The interior point stops at a duality gap ≤ 1e-12 of ``f = ½‖d‖²`` (its relative tolerance in
float64), and ``½‖d − d*‖² ≤ gap`` for a projection, so ‖d − d*‖ ≤ 1e-6·‖d‖; doubled for the
floor of the gap test (objectives below 1e-10 of the data's scale are resolved absolutely) and
quadprog's own rounding (~1e-9 on rank-deficient rows)."""


def _gradients_in_a_cone(seed: int, k: int, rank: int, shift: float) -> np.ndarray:
    """K gradients of length 120 and the given rank (one more with a shift), pulled towards a
    common direction by ``shift`` so that their dual cone is wide (d ≠ 0)."""
    rng = np.random.default_rng(seed)
    jac = rng.standard_normal((k, rank)) @ rng.standard_normal((rank, 120))
    return jac + shift * rng.standard_normal(120)


@pytest.mark.parametrize(
    ("k", "rank", "shift"), [(10, 10, 0.0), (40, 40, 0.0), (100, 100, 0.0), (100, 29, 2.0)]
)
def test_dual_cone_weights_at_many_tasks_give_the_projection(k, rank, shift):
    """UPGrad's K problems at K up to 100, full rank and rank-deficient (K > rank, the normal case
    when the tasks outnumber the trunk's effective dimensions): every row's direction ``Jᵀvᵢ`` is
    the projection of ``gᵢ`` onto the dual cone (quadprog on the projection in gradient space,
    ``min ½‖d − gᵢ‖²`` s.t. ``Jd ≥ 0``, an independent formulation), to the solver's tolerance."""
    quadprog = pytest.importorskip("quadprog")
    jac = _gradients_in_a_cone(k + rank, k, rank, shift)
    v = dual_cone_weights(torch.tensor(jac @ jac.T), torch.eye(k, dtype=torch.float64)).numpy()
    for i in range(0, k, max(1, k // 10)):
        ref = quadprog.solve_qp(np.eye(jac.shape[1]), jac[i], jac.T, np.zeros(k))[0]
        err = np.linalg.norm(v[i] @ jac - ref)
        assert err <= _PROJECTION_TOL * np.linalg.norm(jac[i]), (i, err)


def test_dual_cone_weights_where_the_dual_cone_is_a_subspace():
    """K = 100 gradients of rank 30 that come in opposite pairs: the dual cone {x : Jx ≥ 0} is
    the orthogonal complement of their span, so every projection is exactly 0 (the case where a
    relative comparison of two solvers' directions is meaningless: it measures rounding)."""
    rng = np.random.default_rng(30)
    half = rng.standard_normal((50, 30)) @ rng.standard_normal((30, 120))
    jac = np.vstack([half, -half])
    v = dual_cone_weights(torch.tensor(jac @ jac.T), torch.eye(100, dtype=torch.float64)).numpy()
    sizes = np.linalg.norm(v @ jac, axis=1) / np.linalg.norm(jac, axis=1)
    assert sizes.max() <= _PROJECTION_TOL


def test_nonneg_qp_recovers_from_a_failed_factorisation(monkeypatch):
    """A Newton matrix whose Cholesky factorisation fails (reported, its factor garbage) holds
    that problem still for the iteration and retries with a larger proximal term: the result is
    finite and the same minimiser as without the failure."""
    jac = _gradients_in_a_cone(7, 40, 9, 2.0)
    gram = torch.tensor(jac @ jac.T)
    lower = torch.eye(40, dtype=torch.float64)
    expected = dual_cone_weights(gram, lower).numpy() @ jac
    real = torch.linalg.cholesky_ex
    calls = []

    def failing_first_problem(a, *, out):
        factor, info = real(a, out=out)
        if len(calls) < 3:  # the first three iterations fail for problem 0
            factor[0] = float("nan")
            info[0] = 1
        calls.append(1)
        return factor, info

    monkeypatch.setattr(torch.linalg, "cholesky_ex", failing_first_problem)
    got = dual_cone_weights(gram, lower).numpy() @ jac
    assert len(calls) > 3 and np.isfinite(got).all()
    err = np.linalg.norm(got - expected, axis=1) / np.linalg.norm(jac, axis=1)
    assert err.max() <= 2 * _PROJECTION_TOL


# --------------------------------------------------------------------------------------------
# max_min_in_ball (CAGrad)
# --------------------------------------------------------------------------------------------


def _cagrad_dual(g: np.ndarray, rho: float, w: np.ndarray) -> float:
    """The dual objective g_wᵀg₀ + ρ‖g_w‖ at w ∈ Δ: an upper bound of the primal optimum."""
    return float(w @ g.mean(1) + rho * np.sqrt(max(w @ g @ w, 0.0)))


def _cagrad_case(rng: np.random.Generator, row_scales: float):
    k = int(rng.integers(1, 12))
    rank = int(rng.integers(1, k + 3))
    jac = rng.standard_normal((k, rank)) @ rng.standard_normal((rank, 30))
    jac *= 10 ** rng.uniform(-row_scales, row_scales, size=(k, 1))
    c = float(rng.uniform(0.1, 1.5))
    return jac, c


@pytest.mark.slow
def test_max_min_in_ball_is_optimal_by_a_duality_certificate(scipy_optimize):
    """Primal d feasible with minᵢ gᵢᵀd equal to the dual objective at some w ∈ Δ ⇒ optimal.

    The dual point is recovered independently from d by non-negative least squares on the tasks
    that are active (gᵢᵀd = minⱼ gⱼᵀd), as the KKT conditions require. Where 0 is (nearly) in the
    convex hull (rank-deficient cases) the solver's ridge (1e-10) leaves d optimal only to
    ~1e-5 of the scale: the certificate is then checked against the min-norm point's dual value
    with that tolerance.
    """
    rng = np.random.default_rng(7)
    for _ in range(8):
        jac, c = _cagrad_case(rng, row_scales=2)  # gradient norms spread over 4 decades
        k = jac.shape[0]
        g = jac @ jac.T
        g0 = jac.mean(0)
        rho = c * np.linalg.norm(g0)
        center = torch.full((k,), 1.0 / k, dtype=torch.float64)
        beta = max_min_in_ball(torch.tensor(g), center, rho).numpy()
        d = beta @ jac
        scale = np.sqrt(np.trace(g) / k)
        assert np.linalg.norm(d - g0) <= rho * (1 + 1e-9) + 1e-12 * scale
        improvements = jac @ d
        primal = improvements.min()
        active = improvements <= primal + 1e-7 * scale**2
        on_sphere = np.linalg.norm(d - g0) >= rho * (1 - 1e-6)
        if on_sphere:  # J_Aᵀw ∝ d − g₀ (the scale is fixed by Σw = 1 below)
            w_active, _ = scipy_optimize.nnls(jac[active].T, d - g0)
        else:  # inside the ball: J_Aᵀw = 0, Σw = 1
            a = np.vstack([jac[active].T, np.ones(active.sum())])
            w_active, _ = scipy_optimize.nnls(a, np.append(np.zeros_like(d), 1.0))
        w = np.zeros(k)
        w[active] = w_active
        w /= w.sum()
        w_mn = min_norm_point(torch.tensor(g)).numpy()
        degenerate = w_mn @ g @ w_mn <= 1e-6 * scale**2
        upper = min(_cagrad_dual(g, rho, w), _cagrad_dual(g, rho, w_mn))
        assert upper - primal <= (1e-4 if degenerate else 1e-6) * scale**2


@pytest.mark.slow
def test_max_min_in_ball_is_never_worse_than_the_official_slsqp_solve(scipy_optimize):
    """The official code's algorithm (SLSQP on the dual), compared by weak duality: SLSQP's w
    gives a feasible d_ref (on the sphere) with value P_ref ≤ optimum ≤ its dual value D_ref. Ours
    must reach P_ref (up to our certified accuracy, 1e-6 of the scale) and cannot exceed D_ref.
    No closeness is asked of SLSQP's answer: its accuracy depends on its iterations and on the
    BLAS kernel under it."""
    rng = np.random.default_rng(8)
    compared = 0
    for _ in range(10):
        jac, c = _cagrad_case(rng, row_scales=0.5)
        k = jac.shape[0]
        g = jac @ jac.T
        rho = c * np.linalg.norm(jac.mean(0))
        ref = scipy_optimize.minimize(
            lambda x, g, rho: _cagrad_dual(g, rho, x),
            np.ones(k) / k,
            args=(g, rho),
            bounds=[(0, 1)] * k,
            constraints={"type": "eq", "fun": lambda x: x.sum() - 1},
            method="SLSQP",
            options={"ftol": 1e-15, "maxiter": 2000},
        )
        w = np.clip(ref.x, 0.0, None)
        w /= w.sum()
        gw_norm = np.sqrt(w @ g @ w)
        scale = np.trace(g) / k
        if gw_norm < 1e-3 * np.sqrt(scale):
            continue  # g_w ≈ 0: SLSQP's d_ref is not defined
        d_ref = jac.mean(0) + rho / gw_norm * (w @ jac)
        primal_ref, dual_ref = (jac @ d_ref).min(), _cagrad_dual(g, rho, w)
        center = torch.full((k,), 1.0 / k, dtype=torch.float64)
        d = max_min_in_ball(torch.tensor(g), center, rho).numpy() @ jac
        primal = (jac @ d).min()
        assert primal >= primal_ref - 1e-6 * scale
        assert primal <= dual_ref + 1e-9 * scale
        compared += 1
    assert compared >= 7


def test_max_min_in_ball_where_no_direction_improves_every_task():
    """Opposite gradients: the best worst case is 0, reached inside the ball (g_w* = 0)."""
    jac = _randn(24, 3, 10)
    jac[1] = -jac[0]
    g = jac @ jac.T
    center = torch.full((3,), 1.0 / 3, dtype=torch.float64)
    rho = 0.4 * float(jac.mean(0).norm())
    beta = max_min_in_ball(g, center, rho)
    d = beta @ jac
    assert torch.isfinite(beta).all()
    assert float((d - jac.mean(0)).norm()) <= rho * (1 + 1e-9)
    # The optimum is 0; the ridge (1e-10 relative) leaves it at ~1e-5 of the scale.
    assert float((jac @ d).min()) >= -1e-4 * float(g.diagonal().mean())
    # A zero radius is the centre itself.
    torch.testing.assert_close(max_min_in_ball(g, center, 0.0), center)


def _ball_check(g: torch.Tensor, beta: torch.Tensor, c: float, slack: float) -> None:
    """‖d − g₀‖ ≤ c‖g₀‖ and ‖d‖ ≤ (1 + c)‖g₀‖, measured with the (float64) Gramian g."""
    k = g.shape[0]
    u = torch.full((k,), 1.0 / k, dtype=torch.float64)
    g0 = float((u @ g @ u).clamp(min=0).sqrt())
    assert torch.isfinite(beta).all()
    dev = float(((beta - u) @ g @ (beta - u)).clamp(min=0).sqrt())
    norm = float((beta @ g @ beta).clamp(min=0).sqrt())
    tiny = 1e-7 * float(g.diagonal().amax().sqrt())  # rounding of the quadratic forms
    assert dev <= c * g0 * (1 + slack) + tiny
    assert norm <= (1 + c) * g0 * (1 + slack) + tiny


def _adversarial_jacobians():
    """(K, P) float64 Jacobians that broke or strain CAGrad's solve, at scales 1e-8..1e4, with the
    dtype their Gramian is computed in: seven kinds for each K, each at one scale and one dtype in
    turn, so that every kind meets every scale and both dtypes across the four K (the solve works
    on the Gramian scaled to unit size; scale and dtype matter through its rounding)."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    for k in (2, 3, 5, 8):
        base = randn(k, 50)
        cases = [base]
        cases.append(base[:1].repeat(k, 1) + 1e-6 * randn(k, 50))  # near-collinear
        opposite = base.clone()
        opposite[1] = -1.7 * base[0] + 1e-7 * randn(50)  # near-opposite pair
        cases.append(opposite)
        exact = base.clone()
        exact[1] = -exact[0]  # exactly opposite pair: 0 in the hull
        cases.append(exact)
        cases.append(base * torch.logspace(-3, 3, k, dtype=torch.float64)[:, None])  # norms
        zero = base.clone()
        zero[0] = 0  # a zero gradient
        cases.append(zero)
        conflict = base.clone()
        conflict[1:] = -base[0] + 1e-3 * randn(k - 1, 50)  # all against the first
        cases.append(conflict)
        for j, jac in enumerate(cases):
            scale = (1e-8, 1e-4, 1.0, 1e4)[(7 * (k - 1) + j) % 4]
            yield scale * jac, (torch.float64, torch.float32)[(k + j) % 2]


@pytest.mark.slow
def test_max_min_in_ball_stays_in_its_ball_on_adversarial_gramians():
    """Whatever the Gramian, the update stays in the ball: ‖d‖ ≤ (1 + c)‖g₀‖ (CAGrad's bound).

    The old primal interior point returned its last, infeasible iterate when it ran out of
    iterations, which made CAGrad diverge in training (weights ~10³ on a benign 2×2 Gramian).
    """
    c = 0.4
    for jac, dtype in _adversarial_jacobians():
        k = jac.shape[0]
        u = torch.full((k,), 1.0 / k, dtype=torch.float64)
        g = (jac.to(dtype) @ jac.to(dtype).T).double()
        rho = c * (u @ g @ u).clamp(min=0).sqrt()
        beta = max_min_in_ball(g, u, rho, ridge=1e-5 if dtype == torch.float32 else 1e-10)
        _ball_check(g, beta, c, slack=1e-6)


def test_max_min_in_ball_on_the_gramians_that_made_cagrad_diverge():
    """Two well-conditioned float32 Gramians logged from a LeNet/MultiMNIST run with c = 0.4, on
    which the old solver returned the weights (7.96, 5.25) and (1139, 1865)."""
    c = 0.4
    for entries in (
        [[1.1022981405258179, 0.08520036935806274], [0.08520036935806274, 1.6354484558105469]],
        [[1.1581032276153564, 0.04308382421731949], [0.04308382794260979, 0.7239071726799011]],
    ):
        g = torch.tensor(entries, dtype=torch.float64)
        u = torch.full((2,), 0.5, dtype=torch.float64)
        rho = c * (u @ g @ u).sqrt()
        beta = max_min_in_ball(g, u, rho)
        _ball_check(g, beta, c, slack=1e-9)
        assert float(beta.abs().max()) < 1.0
        # Optimal: ‖d − g₀‖ = ρ with d − g₀ ∝ g_w, w ∈ Δ (the weights of the dual).
        w = (beta - u) / (beta - u).sum()
        assert bool((w >= -1e-12).all())
        torch.testing.assert_close((beta - u) @ g @ (beta - u), rho**2, rtol=1e-9, atol=0)


def test_max_min_in_ball_k2_closed_form_agrees_with_the_general_solve():
    """K = 2 is solved in closed form; the search used for K > 2 gives the same weights."""
    rng = np.random.default_rng(11)
    for trial in range(15):
        jac = rng.standard_normal((2, 6)) * 10 ** rng.uniform(-2, 2, size=(2, 1))
        if trial % 3 == 0:
            jac[1] = -rng.uniform(0.2, 3.0) * jac[0] + 0.3 * rng.standard_normal(6)
        g, _ = normalize_gramian(torch.tensor(jac @ jac.T))
        h = g + torch.diag(1e-10 * g.diagonal() + 1e-20)
        u = torch.full((2,), 0.5, dtype=torch.float64)
        r = float(rng.uniform(0.1, 1.5)) * (u @ h @ u).sqrt()
        b = h @ u
        closed = ball._cagrad_dual_k2(h, b, r)
        general = ball._cagrad_dual_search(h, b, r, 1e-10 / 2**0.5, tol=1e-12, max_iter=30)
        d, d_ref = closed @ torch.tensor(jac), general @ torch.tensor(jac)
        scale = float(torch.tensor(jac).norm(dim=1).max())
        assert float((d - d_ref).norm()) <= 1e-6 * scale, trial


# --------------------------------------------------------------------------------------------
# alpha_fair_weights (Nash-MTL, FairGrad)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_alpha_fair_weights_solve_their_optimality_condition(alpha):
    rng = np.random.default_rng(8)
    for _ in range(10):
        k = int(rng.integers(1, 20))
        jac = _jacobian(rng, k, k + int(rng.integers(0, 5)))
        g = torch.tensor(jac @ jac.T)
        w = alpha_fair_weights(g, alpha)
        assert (w > 0).all()
        # Gw = w^{-1/α}  ⟺  w^{1/α}·(Gw) = 1
        residual = w.pow(1 / alpha) * (g @ w) - 1
        assert float(residual.abs().max()) < 1e-7


def test_alpha_fair_weights_follow_the_scaling_law_and_warm_start():
    jac = _randn(25, 5, 9)
    g = jac @ jac.T
    for alpha in (0.5, 1.0, 3.0):
        w = alpha_fair_weights(g, alpha)
        scaled = alpha_fair_weights(1e6 * g, alpha)
        torch.testing.assert_close(scaled, w * 1e6 ** (-alpha / (1 + alpha)), rtol=1e-8, atol=0)
        warm = alpha_fair_weights(g, alpha, init=w * 1.5)
        torch.testing.assert_close(warm, w, rtol=1e-9, atol=0)


def test_alpha_fair_weights_of_orthogonal_gradients_are_closed_form():
    norms = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    g = torch.diag(norms**2)
    for alpha in (0.5, 1.0, 2.0):
        expected = (norms**2) ** (-alpha / (1 + alpha))
        torch.testing.assert_close(alpha_fair_weights(g, alpha), expected)


def test_alpha_fair_weights_stay_finite_without_a_solution():
    """A zero gradient (or gᵢ = −gⱼ) has no finite solution: the ridge keeps it finite."""
    jac = _randn(26, 3, 7)
    jac[0] = 0
    w = alpha_fair_weights(jac @ jac.T, 1.0)
    assert torch.isfinite(w).all() and (w > 0).all()
    jac[0] = -jac[1]
    assert torch.isfinite(alpha_fair_weights(jac @ jac.T, 1.0)).all()


def test_alpha_fair_weights_reject_a_non_positive_alpha():
    with pytest.raises(ValueError, match="alpha"):
        alpha_fair_weights(torch.eye(2), 0.0)


# --------------------------------------------------------------------------------------------
# project_simplex
# --------------------------------------------------------------------------------------------


def test_project_simplex_is_the_euclidean_projection():
    rng = np.random.default_rng(9)
    v = rng.standard_normal((50, 6)) * 3
    p = project_simplex(torch.tensor(v)).numpy()
    assert p.min() >= 0
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-12)
    for vi, pi in zip(v, p):  # KKT: pi = max(vi − θ, 0) for one θ
        theta = (vi - pi)[pi > 0]
        assert np.ptp(theta) < 1e-12
        assert (vi[pi == 0] <= theta[0] + 1e-12).all()
    inside = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    torch.testing.assert_close(project_simplex(inside), inside)


def test_normalize_gramian_projects_onto_the_psd_cone():
    g = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)  # eigenvalues 3, -1
    unit, scale = normalize_gramian(g)
    assert float(scale) == 1.0
    assert float(torch.linalg.eigvalsh(unit).min()) > -1e-12
    zero, scale = normalize_gramian(torch.zeros(3, 3))
    assert float(scale) == 1.0 and not zero.any()
