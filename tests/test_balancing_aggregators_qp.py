"""The aggregators built on small optimisation problems: mgda, mgda-ub, upgrad, dualproj, cagrad,
nash-mtl, fairgrad, moco. Properties on seeded random Jacobians of controlled rank and scale, plus
torchjd (dev-only) where it implements the same definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from balancing_checks import assert_permutation_equivariant, assert_resumes_exactly, reload
from mtlkit.balancing import GramianWeighting, create, describe, method_class
from mtlkit.balancing.solvers.min_norm import min_norm_point

pytestmark = pytest.mark.usefixtures("one_torch_thread")


GRAMIAN_METHODS = ["mgda", "mgda-ub", "upgrad", "dualproj", "cagrad", "nash-mtl", "fairgrad"]
ALL_METHODS = [*GRAMIAN_METHODS, "moco"]


def _jacobian(seed: int, k: int, p: int = 30, rank: int | None = None, spread: float = 1.0):
    """A (K, P) float64 Jacobian of the given rank, rows scaled over 10^±spread."""
    gen = torch.Generator().manual_seed(seed)
    rank = k if rank is None else rank
    jac = torch.randn(k, rank, generator=gen, dtype=torch.float64) @ torch.randn(
        rank, p, generator=gen, dtype=torch.float64
    )
    scales = 10 ** ((torch.rand(k, 1, generator=gen, dtype=torch.float64) * 2 - 1) * spread)
    return jac * scales


def _cases(n: int = 12):
    """Seeded Jacobians: K from 2 to 12, full rank and rank-deficient, spread norms."""
    for seed in range(n):
        k = 2 + seed % 11
        rank = k if seed % 3 else max(1, k // 2)
        yield seed, _jacobian(seed, k, rank=rank, spread=1.0 if seed % 2 else 0.3)


def _weights(name: str, jac: torch.Tensor, **options) -> torch.Tensor:
    return create(name, **options).weights_from_gramian(jac @ jac.T)


# --------------------------------------------------------------------------------------------
# Registry, options, interface
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_METHODS)
def test_methods_are_registered_with_their_family_and_needs(name):
    info = describe(name)
    assert info.family == "gradient aggregation"
    assert info.needs == ("jacobian" if name == "moco" else "gramian")
    assert issubclass(method_class(name), GramianWeighting) == (name != "moco")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("mgda", {"normalization": "max"}, "normalization"),
        ("upgrad", {"reg_eps": -1.0}, "reg_eps"),
        ("upgrad", {"norm_eps": float("nan")}, "norm_eps"),
        ("upgrad", {"pref_vector": [1.0, -1.0]}, "pref_vector"),
        ("dualproj", {"pref_vector": [0.0, 0.0]}, "pref_vector"),
        ("upgrad", {"pref_vector": [1.0, float("nan")]}, r"pref_vector\[1\] must be a number"),
        ("dualproj", {"pref_vector": [True, 1.0]}, r"pref_vector\[0\] must be a number"),
        ("cagrad", {"c": -0.1}, "c must"),
        ("cagrad", {"rescale": 3}, "rescale"),
        ("nash-mtl", {"update_weights_every": 0}, "update_weights_every"),
        ("nash-mtl", {"optim_niter": 1.5}, "optim_niter"),
        ("nash-mtl", {"max_norm": -1.0}, "max_norm"),
        ("fairgrad", {"alpha": 0.0}, "alpha"),
        ("moco", {"beta": 1.5}, "beta"),
        ("moco", {"gamma": 0.0}, "gamma"),
        ("moco", {"rho": -1.0}, "rho"),
        ("moco", {"lambda_update": "exp"}, "lambda_update"),
        ("moco", {"normalization": "l2"}, "normalization"),
    ],
)
def test_invalid_options_name_the_option(name, options, message):
    with pytest.raises(ValueError, match=message):
        create(name, num_tasks=2, **options)


def test_pref_vector_length_is_checked_against_the_tasks():
    with pytest.raises(ValueError, match="pref_vector"):
        create("upgrad", num_tasks=3, pref_vector=[1.0, 1.0])
    with pytest.raises(ValueError, match="pref_vector"):
        create("upgrad", pref_vector=[1.0, 1.0]).weights_from_gramian(torch.eye(3))


@pytest.mark.parametrize("name", GRAMIAN_METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_keep_dtype_and_device_and_check_the_task_count(name, dtype):
    jac = _jacobian(0, 4).to(dtype)
    w = create(name, num_tasks=4).weights_from_gramian(jac @ jac.T)
    assert w.shape == (4,) and w.dtype == dtype and w.device == jac.device
    assert not w.requires_grad and torch.isfinite(w).all()
    with pytest.raises(ValueError, match="4 tasks"):
        create(name, num_tasks=4).weights_from_gramian(torch.eye(3, dtype=dtype))


def _degenerate_jacobians():
    gen = torch.Generator().manual_seed(0)
    row = torch.randn(1, 20, generator=gen)
    yield "one task", torch.randn(1, 20, generator=gen)
    yield "all zero", torch.zeros(3, 20)
    yield "one zero row", torch.cat([torch.zeros(1, 20), torch.randn(2, 20, generator=gen)])
    yield "identical rows", row.repeat(3, 1)
    yield "opposite rows", torch.cat([row, -row, torch.randn(1, 20, generator=gen)])
    yield "rank one", torch.randn(5, 1, generator=gen) @ row
    yield "tiny", torch.randn(3, 20, generator=gen) * 1e-20
    yield "huge", torch.randn(3, 20, generator=gen) * 1e15
    yield (
        "float32, long, low rank",
        torch.randn(8, 2, generator=gen) @ torch.randn(2, 100_000, generator=gen),
    )


@pytest.mark.parametrize("name", GRAMIAN_METHODS)
def test_degenerate_jacobians_give_finite_weights(name):
    for label, jac in _degenerate_jacobians():
        w = create(name).weights_from_gramian(jac @ jac.T)
        assert torch.isfinite(w).all(), (label, w)
        assert torch.isfinite(w @ jac).all(), label


def test_moco_handles_degenerate_jacobians():
    for label, jac in _degenerate_jacobians():
        d = create("moco").aggregate(jac, torch.ones(jac.shape[0]))
        assert torch.isfinite(d).all(), label


# --------------------------------------------------------------------------------------------
# MGDA
# --------------------------------------------------------------------------------------------


def test_mgda_is_the_min_norm_point_of_the_convex_hull():
    for seed, jac in _cases():
        g = jac @ jac.T
        w = _weights("mgda", jac)
        assert float(w.min()) >= 0 and abs(float(w.sum()) - 1) < 1e-12
        scale = float(g.diagonal().mean())
        gw, value = g @ w, w @ g @ w
        # KKT of min_{w∈Δ} wᵀGw: (Gw)ᵢ ≥ wᵀGw, with equality on the support.
        assert float((gw - value).min()) >= -1e-9 * scale, seed
        assert float((gw - value)[w > 1e-6].abs().max()) <= 1e-9 * scale, seed
        # Hence d is a common descent direction: dᵀgᵢ ≥ ‖d‖² for every task.
        d = w @ jac
        assert float((jac @ d - d @ d).min()) >= -1e-9 * scale, seed


@pytest.mark.slow
def test_mgda_weights_are_scale_invariant_and_permutation_equivariant():
    """Exactly so where the weights are unique (independent gradients); the direction always."""
    for seed, jac in _cases(8):
        w = _weights("mgda", jac)
        unique = int(torch.linalg.matrix_rank(jac)) == jac.shape[0]
        perm = torch.randperm(jac.shape[0], generator=torch.Generator().manual_seed(seed))
        tol = 1e-7 * float(jac.norm(dim=1).max())
        for c in (1e-4, 7.0, 1e5):
            w_c = _weights("mgda", c * jac)
            if unique:
                torch.testing.assert_close(w_c, w, atol=1e-7, rtol=0)
            torch.testing.assert_close(w_c @ jac, w @ jac, atol=tol, rtol=0)
        assert_permutation_equivariant(
            create("mgda").weights_from_gramian,
            jac,
            perm,
            direction_atol=tol,
            weights_tol=(0.0, 1e-7) if unique else None,
        )


@pytest.mark.slow
def test_mgda_agrees_with_torchjd_frank_wolfe_within_its_own_gap():
    """torchjd's MGDA is Frank-Wolfe (Sener & Koltun's Algorithm 2) with a finite budget. Its
    answer is compared through its own Frank-Wolfe gap γ = ‖d_fw‖² − minᵢ gᵢᵀd_fw: convexity gives
    ‖d_fw‖² − ‖d*‖² ≤ 2γ and, d* being the min-norm point of a convex set,
    ‖d_fw − d*‖² ≤ ‖d_fw‖² − ‖d*‖². Ours is within 1.5e-6·‖d‖ of d* (the interior point's gap), and
    never longer than Frank-Wolfe's. Whatever a budget of 1000 steps reaches (Frank-Wolfe is
    sublinear: 1 to 20 % of ‖d‖ on the full-rank cases here), its own gap bounds the comparison."""
    torchjd = pytest.importorskip("torchjd.aggregation")
    for seed, jac in _cases(5):
        g = jac @ jac.T
        w = _weights("mgda", jac)
        w_fw = torchjd.MGDAWeighting(epsilon=1e-15, max_iters=1000)(g)
        d, d_fw = w @ jac, w_fw @ jac
        scale = float(g.diagonal().mean())
        assert float(d @ d) <= float(d_fw @ d_fw) * (1 + 1e-10) + 1e-12 * scale
        fw_gap = max(float(d_fw @ d_fw - (jac @ d_fw).min()), 0.0)
        rounding = 1e-12 * scale**0.5
        tol = (2 * fw_gap) ** 0.5 + 1.5e-6 * float(d.norm()) + rounding
        assert float((d - d_fw).norm()) <= tol, seed


def test_mgda_l2_normalization_is_sener_and_koltuns():
    """The weights are the min-norm point of the normalised gradients, applied to the raw ones."""
    jac = _jacobian(3, 5, spread=2.0)
    norms = jac.norm(dim=1)
    expected = min_norm_point((jac / norms[:, None]) @ (jac / norms[:, None]).T)
    torch.testing.assert_close(_weights("mgda", jac, normalization="l2"), expected)


def test_mgda_loss_normalizations_need_positive_losses():
    jac = _jacobian(4, 3)
    losses = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    for normalization, norms in (("loss", losses), ("loss+", losses * jac.norm(dim=1))):
        mgda = create("mgda", normalization=normalization)
        expected = min_norm_point((jac / norms[:, None]) @ (jac / norms[:, None]).T) @ jac
        torch.testing.assert_close(mgda.aggregate(jac, losses), expected)
        with pytest.raises(ValueError, match="loss values"):
            mgda.weights_from_gramian(jac @ jac.T)
        with pytest.raises(ValueError, match="positive"):
            mgda.aggregate(jac, -losses)


def test_mgda_ub_is_mgda_on_the_representation():
    cls = method_class("mgda-ub")
    assert cls.on_features is True and method_class("mgda").on_features is False
    jac = _jacobian(5, 4)
    torch.testing.assert_close(_weights("mgda-ub", jac), _weights("mgda", jac))


# --------------------------------------------------------------------------------------------
# UPGrad and DualProj
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_dual_cone_methods_never_conflict_with_any_task(name):
    for seed, jac in _cases():
        scale = float((jac @ jac.T).diagonal().mean())
        # Without the ridge (the default) the projection is exact: Jd ≥ 0.
        d = _weights(name, jac) @ jac
        assert float((jac @ d).min()) >= -1e-6 * scale, seed
        # A ridge works per task: it allows on task i a conflict of at most reg_eps·‖gᵢ‖²·wᵢ,
        # relative to that task's own norm.
        w = _weights(name, jac, reg_eps=1e-4)
        norms2 = (jac * jac).sum(1)
        bound = 1e-4 * norms2 * w + 1e-6 * norms2.sqrt() * float((w @ jac).norm())
        assert bool((jac @ (w @ jac) >= -bound).all()), seed


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_dual_cone_methods_do_not_conflict_at_small_scales(name):
    """torchjd's norm_eps = 1e-4 would return the plain mean here (‖J‖²_F < 1e-4)."""
    jac = _jacobian(6, 4, spread=0.3)
    jac = jac / jac.norm() * 1e-4
    d = _weights(name, jac, reg_eps=0.0) @ jac
    assert float((jac @ d).min()) >= -1e-6 * float((jac @ jac.T).diagonal().mean())
    d_mean = jac.mean(0)
    if float((jac @ d_mean).min()) < 0:  # the mean conflicts, the projection does not
        assert not torch.allclose(d, d_mean)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_dual_cone_methods_return_the_gradient_when_all_tasks_agree(name):
    row = _jacobian(7, 1)
    jac = row.repeat(4, 1)
    torch.testing.assert_close(_weights(name, jac) @ jac, row[0], atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_dual_cone_methods_are_permutation_equivariant(name):
    """The direction always (the projections are unique, within the solver's 1.5e-6 relative
    accuracy per projection); the weights where they are unique (independent gradients)."""
    for seed, jac in _cases(8):
        perm = torch.randperm(jac.shape[0], generator=torch.Generator().manual_seed(seed))
        unique = int(torch.linalg.matrix_rank(jac)) == jac.shape[0]
        assert_permutation_equivariant(
            create(name).weights_from_gramian,
            jac,
            perm,
            direction_atol=2 * 1.5e-6 * float(jac.norm(dim=1).sum()),
            weights_tol=(1e-6, 1e-6) if unique else None,
        )


def test_upgrad_with_a_one_hot_preference_projects_that_task():
    jac = _jacobian(8, 3)
    w = _weights("upgrad", jac, pref_vector=[1.0, 0.0, 0.0], reg_eps=0.0)
    d = w @ jac
    # π_J(g₁): d − g₁ is orthogonal to d, and d does not conflict.
    assert float((jac @ d).min()) >= -1e-9 * float(jac.norm() ** 2)
    assert abs(float((d - jac[0]) @ d)) <= 1e-9 * float(jac.norm() ** 2)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_dual_cone_methods_agree_with_torchjd(name):
    """The same projections as torchjd's (quadprog through qpsolvers), compared without either
    ridge (torchjd's ridge is relative to trace(G), ours to each task's norm): on independent
    gradients, where quadprog's positive-definite requirement holds. quadprog is a direct method:
    its error is ≲ K²·κ(G)·eps; ours is the interior point's 1.5e-6 per projection."""
    torchjd = pytest.importorskip("torchjd.aggregation")
    pytest.importorskip("qpsolvers")
    pytest.importorskip("quadprog")
    from torchjd.linalg import QuadprogProjector

    aggregator = torchjd.UPGrad if name == "upgrad" else torchjd.DualProj
    compared = 0
    for _, jac in _cases(12):
        k = jac.shape[0]
        if int(torch.linalg.matrix_rank(jac)) < k:
            continue
        d = create(name).aggregate(jac)
        d_ref = aggregator(projector=QuadprogProjector(norm_eps=0.0, reg_eps=0.0))(jac)
        g = jac @ jac.T
        cond = float(torch.linalg.cond(g / g.trace()))
        scale = float(jac.norm(dim=1).sum())
        tol = 1.5e-6 * scale + k * k * cond * torch.finfo(torch.float64).eps * scale
        torch.testing.assert_close(d, d_ref, atol=tol, rtol=0)
        compared += 1
    assert compared >= 6


# --------------------------------------------------------------------------------------------
# CAGrad
# --------------------------------------------------------------------------------------------


def test_cagrad_with_c_zero_is_the_mean_gradient():
    jac = _jacobian(9, 5)
    torch.testing.assert_close(_weights("cagrad", jac, c=0.0), torch.full((5,), 0.2).double())


@pytest.mark.slow
def test_cagrad_solves_its_max_min_problem():
    """d* maximises minᵢ gᵢᵀd over the ball ‖d − g₀‖ ≤ c‖g₀‖: no random point of the ball does
    better, and (weak duality) no random simplex point w has a lower dual objective
    g_wᵀg₀ + c‖g₀‖‖g_w‖, the bound being tight at the optimum."""
    gen = torch.Generator().manual_seed(0)
    for seed, jac in _cases():
        k = jac.shape[0]
        c = 0.4
        g0 = jac.mean(0)
        radius = c * float(g0.norm())
        d = _weights("cagrad", jac, c=c, rescale=0) @ jac
        assert float((d - g0).norm()) <= radius * (1 + 1e-9)
        value = float((jac @ d).min())
        scale = float((jac @ jac.T).diagonal().mean())
        u = torch.randn(500, jac.shape[1], generator=gen, dtype=torch.float64)
        u = u / u.norm(dim=1, keepdim=True) * radius * torch.rand(500, 1, generator=gen) ** 0.1
        others = (g0 + u) @ jac.T
        assert value >= float(others.min(1).values.max()) - 1e-9 * scale, seed
        w = torch.distributions.Dirichlet(torch.ones(k, dtype=torch.float64)).sample((500,))
        w = torch.cat([w, torch.eye(k, dtype=torch.float64)])
        gw = w @ jac
        dual = gw @ g0 + radius * gw.norm(dim=1)
        assert value <= float(dual.min()) + 1e-9 * scale, seed


def test_cagrad_rescale_conventions():
    jac = _jacobian(10, 4)
    w0 = _weights("cagrad", jac, c=0.5, rescale=0)
    torch.testing.assert_close(_weights("cagrad", jac, c=0.5), w0 / 1.25)  # default: 1 + c²
    torch.testing.assert_close(_weights("cagrad", jac, c=0.5, rescale=2), w0 / 1.5)


@pytest.mark.slow
def test_cagrad_is_scale_invariant_and_permutation_equivariant():
    for seed, jac in _cases(6):
        w = _weights("cagrad", jac)
        torch.testing.assert_close(_weights("cagrad", 1e3 * jac), w, atol=1e-6, rtol=1e-6)
        perm = torch.randperm(jac.shape[0], generator=torch.Generator().manual_seed(seed))
        assert_permutation_equivariant(
            create("cagrad").weights_from_gramian,
            jac,
            perm,
            direction_atol=1e-6 * float(jac.norm()),
        )


def _official_cagrad(jac: np.ndarray, alpha: float, rescale: int) -> np.ndarray:
    """The official CAGrad update (Liu et al. 2021, github.com/Cranial-XIX/CAGrad, ``cagrad``),
    translated line by line from its torch/numpy mix: SLSQP on the dual over the simplex, with
    its 1e-8 guards; only the SLSQP tolerance is tightened (default ftol 1e-6)."""
    from scipy.optimize import minimize

    k = jac.shape[0]
    gg = jac @ jac.T
    g0_norm = np.sqrt(gg.mean() + 1e-8)
    x_start = np.ones(k) / k
    cons = {"type": "eq", "fun": lambda x: 1 - sum(x)}
    b = x_start.copy()
    c = alpha * g0_norm + 1e-8

    def objfn(x):
        return (x @ gg @ b + c * np.sqrt(x @ gg @ x + 1e-8)).sum()

    res = minimize(
        objfn,
        x_start,
        bounds=[(0, 1)] * k,
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    gw = res.x @ jac
    g = jac.mean(0) + c / (np.linalg.norm(gw) + 1e-8) * gw
    return g / (1.0, 1 + alpha**2, 1 + alpha)[rescale]


@pytest.mark.parametrize("rescale", [0, 1, 2])
def test_cagrad_is_never_worse_than_the_official_code(rescale):
    """The official code (SLSQP, an iterative solver whose answer depends on its iterations and
    on the BLAS) is compared by what it certifies: its update, scaled back by the rescale
    divisor, is a point of (nearly: its 1e-8 guards) the ball, so its worst-case improvement is
    at most the optimum; ours must reach it, up to our certified 1e-6 of the scale plus what the
    official point gains by lying outside the ball."""
    pytest.importorskip("scipy")
    rng = np.random.default_rng(rescale)
    divisor = (1.0, 1 + 0.4**2, 1 + 0.4)[rescale]
    for trial in range(6):
        k = int(rng.integers(2, 8))
        jac = rng.standard_normal((k, 40)) * 10 ** rng.uniform(-0.5, 0.5, size=(k, 1))
        official = _official_cagrad(jac, 0.4, rescale) * divisor
        w = _weights("cagrad", torch.tensor(jac), c=0.4, rescale=rescale).numpy()
        d = (w @ jac) * divisor
        g0 = jac.mean(0)
        radius = 0.4 * np.linalg.norm(g0)
        assert np.linalg.norm(d - g0) <= radius * (1 + 1e-9)
        outside = max(np.linalg.norm(official - g0) - radius, 0.0)
        scale = np.trace(jac @ jac.T) / k
        tol = 1e-6 * scale + outside * np.linalg.norm(jac, axis=1).max()
        assert (jac @ d).min() >= (jac @ official).min() - tol, (trial, k)


@pytest.mark.slow
def test_cagrad_update_norm_is_bounded_on_float32_jacobians():
    """‖d‖ ≤ (1 + c)‖g₀‖/(1 + c²) on adversarial float32 Jacobians, measured on the Jacobian (not
    the float32 Gramian the weights were solved on): near-parallel, near-opposite, zero and
    badly scaled gradients at scales 1e-8..1e4. Before the fix a benign 2×2 Gramian gave weights
    ~10³ and diverged training."""
    gen = torch.Generator().manual_seed(3)
    c = 0.4
    for trial in range(20):
        k = (2, 2, 3, 5)[trial % 4]
        jac = torch.randn(k, 3000, generator=gen, dtype=torch.float64)
        kind = trial % 5
        if kind == 1:
            jac = jac[:1].repeat(k, 1) + 1e-5 * jac
        elif kind == 2:
            jac[1] = -jac[0] + 1e-3 * jac[1]
        elif kind == 3:
            jac[0] = 0
        elif kind == 4:
            jac = jac * torch.logspace(-3, 3, k, dtype=torch.float64)[:, None]
        jac32 = (10.0 ** (trial % 13 - 8) * jac).float()
        true = jac32.double()
        g0 = true.mean(0)
        resolution = 1e-5 * float(true.norm(dim=1).max() ** 2)
        if float(g0 @ g0) < 1e3 * resolution:
            continue  # the float32 Gramian cannot resolve g₀ itself
        w = _weights("cagrad", jac32, c=c)
        assert w.dtype == torch.float32 and bool(torch.isfinite(w).all())
        d = w.double() @ true
        assert float(d.norm()) <= (1 + c) / (1 + c**2) * float(g0.norm()) * (1 + 1e-3), trial


@pytest.mark.slow
def test_cagrad_is_never_worse_than_torchjds():
    """torchjd's CAGrad solves the same problem with cvxpy (an iterative conic solver, whose
    answer depends on its own tolerances and the BLAS): compared by weak duality, not by
    closeness. Where torchjd's d is feasible (in the ball), our worst-case improvement minᵢ gᵢᵀd
    is at least its own, up to our solver's certified accuracy (1e-6 of the scale)."""
    pytest.importorskip("cvxpy")
    torchjd = pytest.importorskip("torchjd.aggregation")
    compared = 0
    for _, jac in _cases(8):
        g0 = jac.mean(0)
        radius = 0.4 * float(g0.norm())
        d = _weights("cagrad", jac, rescale=0) @ jac
        d_ref = torchjd.CAGradWeighting(c=0.4)(jac @ jac.T) @ jac
        scale = float((jac @ jac.T).diagonal().mean())
        if float((d_ref - g0).norm()) > radius * (1 + 1e-9):
            continue  # not a feasible point: nothing to compare against
        assert float((jac @ d).min()) >= float((jac @ d_ref).min()) - 1e-6 * scale
        compared += 1
    assert compared >= 4


# --------------------------------------------------------------------------------------------
# Nash-MTL and FairGrad
# --------------------------------------------------------------------------------------------


def test_nash_mtl_solves_the_bargaining_condition():
    for _, jac in _cases():
        if int(torch.linalg.matrix_rank(jac)) < jac.shape[0]:
            continue  # no bargaining solution without linearly independent gradients
        g = jac @ jac.T
        alpha = _weights("nash-mtl", jac, max_norm=0.0)
        assert bool((alpha > 0).all())
        torch.testing.assert_close(alpha * (g @ alpha), torch.ones_like(alpha), rtol=0, atol=1e-8)


def test_nash_mtl_clips_the_update_norm():
    jac = _jacobian(11, 4)
    alpha = _weights("nash-mtl", jac, max_norm=0.0)
    # ‖d‖² = αᵀGα = K at the solution, so max_norm = 1 scales α by 1/√K.
    torch.testing.assert_close(float((alpha @ jac).norm()), 2.0)
    clipped = _weights("nash-mtl", jac)
    torch.testing.assert_close(clipped, alpha / 2.0)
    torch.testing.assert_close(_weights("nash-mtl", jac, max_norm=10.0), alpha)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_nash_mtl_step_follows_the_official_code_at_every_gradient_scale(k):
    """The official NashMTL divides GᵀG by N = ‖GᵀG‖_F, but its constraints
    −log(αᵢ·N) − log((Ĝα)ᵢ) ≤ 0 put N back: the fixed point is αᵢ(Gα)ᵢ = 1 on the *unnormalised*
    G, i.e. α = α̂/√N with Ĝα̂ = 1/α̂. So ‖d‖² = αᵀGα = K at every gradient scale, and
    ``clip_grad_norm_(max_norm)`` makes it min(√K, max_norm): the step does not shrink with the
    gradients (the official solver only returns a smaller step where ECOS fails at tiny scales
    and it falls back to the previous α)."""
    jac = _jacobian(20 + k, k, spread=0.5)
    for scale in (1e-4, 1e-2, 1.0, 1e2):
        scaled = scale * jac
        g = scaled @ scaled.T
        n = float(torch.linalg.matrix_norm(g))  # Frobenius, as torch.norm(GTG)
        alpha = _weights("nash-mtl", scaled, max_norm=0.0)
        # The optimality condition on the normalised Gramian, for α̂ = √N·α.
        g_hat, alpha_hat = g / n, alpha * n**0.5
        torch.testing.assert_close(g_hat @ alpha_hat, 1 / alpha_hat, rtol=1e-8, atol=0)
        for max_norm in (0.0, 1.0, 0.5, 10.0):
            expected = k**0.5 if max_norm == 0 else min(k**0.5, max_norm)
            d = _weights("nash-mtl", scaled, max_norm=max_norm) @ scaled
            torch.testing.assert_close(float(d.norm()), expected, rtol=1e-8, atol=0)


def test_nash_mtl_reuses_its_weights_between_updates_and_keeps_them_in_its_state():
    j1, j2, j3 = _jacobian(12, 3), _jacobian(13, 3), _jacobian(14, 3)
    nash = create("nash-mtl", num_tasks=3, update_weights_every=2, max_norm=0.0)
    a1 = nash.weights_from_gramian(j1 @ j1.T)
    torch.testing.assert_close(nash.weights_from_gramian(j2 @ j2.T), a1)  # reused
    resumed = assert_resumes_exactly(
        nash,
        create("nash-mtl", num_tasks=3, update_weights_every=2, max_norm=0.0),
        lambda method, _: method.weights_from_gramian(j3 @ j3.T),
        steps=1,
    )
    assert resumed.step == nash.step == 3
    torch.testing.assert_close(nash.alpha, _weights("nash-mtl", j3, max_norm=0.0))  # solved afresh


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fairgrad_solves_its_optimality_condition(alpha):
    for _, jac in _cases():
        if int(torch.linalg.matrix_rank(jac)) < jac.shape[0]:
            continue
        w = _weights("fairgrad", jac, alpha=alpha)
        assert bool((w > 0).all())
        # Gw = w^{-1/α}, i.e. every task's improvement gᵢᵀd is wᵢ^{-1/α}.
        torch.testing.assert_close(jac @ (w @ jac), w.pow(-1 / alpha), rtol=1e-7, atol=0)


def test_fairgrad_with_alpha_one_is_nash_mtl_without_clipping():
    jac = _jacobian(15, 5)
    torch.testing.assert_close(
        _weights("fairgrad", jac, alpha=1.0), _weights("nash-mtl", jac, max_norm=0.0)
    )


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_fairgrad_agrees_with_torchjd_within_its_residual(alpha):
    """torchjd's FairGrad is the official code's scipy least-squares (iterative) on the same
    equation F(w) = Gw − w^{−1/α} = 0. Compared through its own residual: F is strongly monotone
    with derivative DF = G + (1/α)·diag(w^{−1/α−1}) ≻ 0, so ‖w_ref − w*‖ ≤ ‖DF⁻¹‖·‖F(w_ref)‖ to
    first order (evaluated at w*); ours meets F(w) = 0 to 1e-12."""
    torchjd = pytest.importorskip("torchjd.aggregation")
    pytest.importorskip("scipy")
    for seed in range(6):
        jac = _jacobian(seed, 2 + seed, spread=0.3)
        g = jac @ jac.T
        w_ref = torchjd.FairGradWeighting(alpha=alpha)(g).double()
        w = _weights("fairgrad", jac, alpha=alpha)
        residual = float((g @ w_ref - w_ref.pow(-1 / alpha)).norm())
        jacobian = g + torch.diag(w.pow(-1 / alpha - 1) / alpha)
        bound = float(torch.linalg.matrix_norm(torch.linalg.inv(jacobian), ord=2)) * residual
        own = float((g @ w - w.pow(-1 / alpha)).norm())
        tol = 2 * bound + own + 1e-12 * float(w.norm())
        assert float((w - w_ref).norm()) <= tol, seed


# --------------------------------------------------------------------------------------------
# MoCo
# --------------------------------------------------------------------------------------------


def test_moco_with_full_tracking_reproduces_a_shared_gradient():
    """β = 1 makes Y the current (normalised) gradients: identical rows give their direction."""
    row = _jacobian(16, 1)
    jac = row.repeat(3, 1)
    d = create("moco", beta=1.0, normalization="none").aggregate(jac)
    torch.testing.assert_close(d, row[0])
    losses = torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64)
    d = create("moco", beta=1.0).aggregate(jac, losses)  # hᵢ = Lᵢ gᵢ / ‖gᵢ‖
    torch.testing.assert_close(d, 2.0 * row[0] / row[0].norm())


@pytest.mark.parametrize("lambda_update", ["projection", "softmax"])
def test_moco_follows_its_recursions(lambda_update):
    jacs = [_jacobian(20 + i, 3) for i in range(4)]
    moco = create("moco", normalization="none", rho=0.1, lambda_update=lambda_update)
    y = torch.zeros_like(jacs[0])
    lam = torch.full((3,), 1 / 3, dtype=torch.float64)
    for step, jac in enumerate(jacs, start=1):
        y = y - 0.5 / math.sqrt(step) * (y - jac)
        lam = lam - 0.1 / math.sqrt(step) * ((y @ y.T + 0.1 * torch.eye(3)) @ lam)
        if lambda_update == "projection":  # Euclidean projection onto the simplex
            lam = torch.tensor(_project_simplex_reference(lam.numpy()))
        else:
            lam = torch.softmax(lam, 0)
        torch.testing.assert_close(moco.aggregate(jac), lam @ y)
        assert abs(float(moco.lambd.sum()) - 1) < 1e-12 and float(moco.lambd.min()) >= 0


def _project_simplex_reference(v: np.ndarray) -> np.ndarray:
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1
    rho = np.nonzero(u - css / np.arange(1, len(v) + 1) > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1), 0)


def test_moco_keeps_its_step_count_in_the_state_dict():
    """(Its exact resume from ``state_dict`` is the contract's, test_balancing_contract.py.)"""
    losses = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    moco = create("moco", num_tasks=3)
    for i in range(3):
        moco.aggregate(_jacobian(30 + i, 3, p=12), losses)
    assert reload(moco, create("moco", num_tasks=3)).step == moco.step == 3


def test_moco_needs_the_losses_for_its_loss_normalization():
    with pytest.raises(ValueError, match="loss values"):
        create("moco").aggregate(_jacobian(40, 2))


# --------------------------------------------------------------------------------------------
# Through the balancer interface
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mgda", "upgrad", "dualproj", "cagrad", "nash-mtl", "fairgrad"])
def test_backward_writes_the_weighted_shared_gradient(name):
    torch.manual_seed(0)
    trunk = torch.nn.Linear(6, 5)
    heads = torch.nn.ModuleList([torch.nn.Linear(5, 1) for _ in range(3)])
    x = torch.randn(8, 6)
    z = trunk(x)
    losses = [(head(z) ** 2).mean() for head in heads]
    shared = list(trunk.parameters())
    rows = [torch.autograd.grad(loss, shared, retain_graph=True) for loss in losses]
    jac = torch.stack([torch.cat([g.reshape(-1) for g in row]) for row in rows])
    balancer = create(name, num_tasks=3)
    info = balancer.backward(losses, shared, z)
    flat = torch.cat([p.grad.reshape(-1) for p in shared])
    torch.testing.assert_close(flat, info.weights @ jac, rtol=1e-5, atol=1e-6)


def test_moco_backward_runs_through_the_engine():
    torch.manual_seed(0)
    trunk = torch.nn.Linear(6, 5)
    heads = torch.nn.ModuleList([torch.nn.Linear(5, 1) for _ in range(2)])
    z = trunk(torch.randn(8, 6))
    losses = [(head(z) ** 2).mean() for head in heads]
    create("moco", num_tasks=2).backward(losses, list(trunk.parameters()), z)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trunk.parameters())
