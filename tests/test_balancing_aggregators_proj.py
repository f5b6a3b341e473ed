"""Projection and closed-form gradient aggregators: defining properties, and references.

pcgrad, gradvac, imtl-g, aligned-mtl, config, graddrop, db-mtl. Every property is checked on
seeded random Jacobians of controlled rank and scale; torchjd (dev-only) is the reference where it
implements the same definition, and each difference of definition is noted at its test.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from balancing_checks import assert_permutation_equivariant, reload
from mtlkit.balancing import create, method_class
from mtlkit.balancing.base import GramianWeighting
from mtlkit.balancing.methods import gradvac as gradvac_module
from mtlkit.balancing.methods import pcgrad as pcgrad_module
from mtlkit.balancing.methods._common import random_orders
from mtlkit.balancing.methods.aligned_mtl import balance_transformation
from mtlkit.balancing.methods.gradvac import gradvac_coefficients
from mtlkit.balancing.methods.pcgrad import pcgrad_coefficients

F64 = torch.float64
METHODS = ["pcgrad", "gradvac", "imtl-g", "aligned-mtl", "config", "graddrop", "db-mtl"]
STATEFUL = {"gradvac", "db-mtl"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _jacobian(k, p=64, *, rank=None, scales=None, seed=0, dtype=F64):
    """A seeded (k, p) Jacobian of the given rank, with rows scaled by ``scales``."""
    gen = torch.Generator().manual_seed(seed)
    rank = k if rank is None else rank
    jac = torch.randn(k, rank, generator=gen, dtype=F64) @ torch.randn(
        rank, p, generator=gen, dtype=F64
    )
    if scales is not None:
        jac = jac / jac.norm(dim=1, keepdim=True) * torch.as_tensor(scales, dtype=F64)[:, None]
    return jac.to(dtype)


def _gramian(jac):
    return jac @ jac.T


def _make(name, k, **options):
    return create(name, num_tasks=k, **options)


def _losses(k, seed=0):
    return torch.rand(k, generator=torch.Generator().manual_seed(seed + 99), dtype=F64) + 0.5


def _run(method, jac, losses=None):
    if losses is None:
        losses = _losses(jac.shape[0]).to(jac.dtype)
    return method.aggregate(jac, losses)


def _units(jac):
    return jac / jac.norm(dim=1, keepdim=True)


class _ScriptedRandperm:
    """Stands in for ``torch.randperm`` in torchjd so it visits tasks in orders we choose."""

    def __init__(self, perms):
        self.perms = list(perms)

    def __call__(self, n, *args, **kwargs):
        perm = self.perms.pop(0)
        assert len(perm) == n
        return torch.tensor(perm)


@pytest.fixture
def tja():
    """torchjd's aggregators (dev-only): only the tests that compare against them need it, so
    that the property tests still run where it is not installed."""
    return pytest.importorskip("torchjd.aggregation")


# ----------------------------------------------------------------------------------------------
# options


@pytest.mark.parametrize(
    ("name", "options", "needle"),
    [
        ("pcgrad", {"seed": -1}, "seed"),
        ("pcgrad", {"seed": 1.5}, "seed"),
        ("gradvac", {"beta": 1.5}, "beta"),
        ("gradvac", {"beta": "x"}, "beta"),
        ("graddrop", {"leak": 2.0}, "leak"),
        ("graddrop", {"leak": [0.1, -0.1]}, "leak[1]"),
        ("graddrop", {"leak": [0.1, 0.2, 0.3]}, "3 entries"),
        ("aligned-mtl", {"scale": "max"}, "scale"),
        ("aligned-mtl", {"rtol": -1.0}, "rtol"),
        ("aligned-mtl", {"rtol": "0.1"}, "rtol"),
        ("aligned-mtl", {"rtol": True}, "rtol"),
        ("db-mtl", {"beta": 1.0}, "beta"),
        ("db-mtl", {"beta_sigma": -0.5}, "beta_sigma"),
    ],
)
def test_options_are_validated_by_name(name, options, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        create(name, num_tasks=2, **options)


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_stateful_methods_need_num_tasks(name):
    with pytest.raises(ValueError, match="num_tasks=K"):
        create(name)


def test_wrong_number_of_tasks_is_refused():
    with pytest.raises(ValueError, match="3 tasks"):
        create("gradvac", num_tasks=3).weights_from_gramian(torch.eye(2))
    with pytest.raises(ValueError, match="Gramian"):
        create("pcgrad").weights_from_gramian(torch.ones(2, 3))


# ----------------------------------------------------------------------------------------------
# behaviour common to every method


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_dtype_is_kept_and_zero_rows_stay_finite(name, dtype):
    jac = _jacobian(4, 40, seed=1, dtype=dtype)
    jac[2] = 0
    out = _run(_make(name, 4), jac)
    assert out.dtype == dtype and out.shape == (40,)
    assert torch.isfinite(out).all()
    zero = _run(_make(name, 4), torch.zeros(4, 40, dtype=dtype))
    assert torch.equal(zero, torch.zeros_like(zero))


@pytest.mark.parametrize("name", [m for m in METHODS if m != "db-mtl"])
def test_single_task_returns_its_gradient(name):
    jac = _jacobian(1, 30, seed=2)
    torch.testing.assert_close(_run(_make(name, 1), jac), jac[0])


@pytest.mark.parametrize("name", METHODS)
def test_drives_the_engine_backward(name):
    torch.manual_seed(0)
    trunk, heads = torch.nn.Linear(6, 5), [torch.nn.Linear(5, 1) for _ in range(3)]
    features = torch.tanh(trunk(torch.randn(8, 6)))
    losses = [(h(features) ** 2).mean() + 0.1 for h in heads]
    info = _make(name, 3).backward(losses, trunk.parameters(), features)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trunk.parameters())
    if issubclass(method_class(name), GramianWeighting):
        assert info.weights is not None and info.weights.shape == (3,)


# ----------------------------------------------------------------------------------------------
# pcgrad


def test_pcgrad_each_projection_removes_the_conflict_it_targets():
    jac = _jacobian(6, 30, seed=3)  # random 6×30: many conflicting pairs
    gram = jac @ jac.T
    orders = random_orders(6, torch.Generator().manual_seed(0), torch.device("cpu"))
    projected_any = False
    for step in range(5):
        before = pcgrad_coefficients(gram, orders[:, :step]) @ jac
        after = pcgrad_coefficients(gram, orders[:, : step + 1]) @ jac
        targets = jac[orders[:, step]]
        conflict = (before * targets).sum(1) < 0
        projected_any |= bool(conflict.any())
        dots_after = (after * targets).sum(1)
        assert (dots_after >= -1e-10 * jac.norm() ** 2).all()
        # rows without a conflict at this step are left exactly as they were
        torch.testing.assert_close(after[~conflict], before[~conflict], rtol=0, atol=0)
        # ... and the paper's projection in parameter space gives the same rows
        ref = (
            before
            - torch.where(conflict, (before * targets).sum(1) / (targets * targets).sum(1), 0)[
                :, None
            ]
            * targets
        )
        torch.testing.assert_close(after, ref)
    assert projected_any


def test_pcgrad_non_conflicting_and_orthogonal_inputs_give_the_plain_sum():
    positive = _jacobian(5, 40, seed=4).abs()  # all pairwise dot products > 0
    torch.testing.assert_close(create("pcgrad").aggregate(positive), positive.sum(0))
    orthogonal = torch.zeros(2, 10, dtype=F64)
    orthogonal[0, :5], orthogonal[1, 5:] = 1.0, -2.0
    torch.testing.assert_close(create("pcgrad").aggregate(orthogonal), orthogonal.sum(0))


def test_pcgrad_is_reproducible_by_seed():
    """(Its exact resume from ``state_dict`` is the contract's, test_balancing_contract.py.)"""
    gram = _gramian(_jacobian(8, 20, seed=5))
    a, b, c = create("pcgrad", seed=7), create("pcgrad", seed=7), create("pcgrad", seed=8)
    first = [a.weights_from_gramian(gram) for _ in range(3)]
    assert all(torch.equal(x, b.weights_from_gramian(gram)) for x in first)
    assert any(not torch.equal(x, c.weights_from_gramian(gram)) for x in first)


@pytest.mark.slow
def test_pcgrad_matches_torchjd_with_the_same_orders(monkeypatch, tja):
    # torchjd draws a permutation of all K tasks per task i from the global RNG (skipping i);
    # K=2 needs no order, and for K=5 we feed it the orders our generator drew.
    jac2 = _jacobian(2, 30, seed=6)
    jac2[1] = -jac2[0] + 0.3 * jac2[1]  # make them conflict
    torch.testing.assert_close(create("pcgrad").aggregate(jac2), tja.PCGrad()(jac2))

    jac = _jacobian(5, 30, seed=7)
    orders = random_orders(5, torch.Generator().manual_seed(0), torch.device("cpu"))
    monkeypatch.setattr(pcgrad_module, "random_orders", lambda *a: orders)
    perms = [orders[i].tolist() + [i] for i in range(5)]
    monkeypatch.setattr(torch, "randperm", _ScriptedRandperm(perms))
    expected = tja.PCGrad()(jac)
    monkeypatch.undo()
    monkeypatch.setattr(pcgrad_module, "random_orders", lambda *a: orders)
    torch.testing.assert_close(create("pcgrad").aggregate(jac), expected, rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------------------------
# gradvac


def test_gradvac_first_step_is_pcgrad_with_the_same_orders():
    # φ̂ starts at 0, and the vaccine towards φ̂ = 0 is exactly PCGrad's projection
    gram = _gramian(_jacobian(6, 20, seed=8))
    gv, pc = create("gradvac", num_tasks=6, seed=3), create("pcgrad", seed=3)
    torch.testing.assert_close(gv.weights_from_gramian(gram), pc.weights_from_gramian(gram))
    assert (gv.targets != 0).any()


def test_gradvac_correction_reaches_the_goal_cosine():
    jac = _jacobian(4, 25, seed=9)
    gram = jac @ jac.T
    goals = torch.full((4, 4), 0.6, dtype=F64)
    orders = random_orders(4, torch.Generator().manual_seed(1), torch.device("cpu"))
    coefficients, new_goals = gradvac_coefficients(gram, orders[:, :1], goals, beta=0.25)
    after, targets = coefficients @ jac, jac[orders[:, 0]]
    cos_before = torch.nn.functional.cosine_similarity(jac, targets, dim=1)
    cos_after = torch.nn.functional.cosine_similarity(after, targets, dim=1)
    below = cos_before < 0.6
    assert below.any()
    torch.testing.assert_close(cos_after[below], torch.full_like(cos_after[below], 0.6))
    torch.testing.assert_close(after[~below], jac[~below])
    rows = torch.arange(4)
    torch.testing.assert_close(new_goals[rows, orders[:, 0]], 0.75 * 0.6 + 0.25 * cos_before)


def test_gradvac_matches_torchjd_over_several_steps(monkeypatch, tja):
    # Same definition as torchjd (whole model, φ̂ updated on every visit); torchjd adds 1e-8 to
    # its denominators, we do not, hence a small tolerance. Orders are scripted for both.
    k, steps = 4, 4
    # .double(): the goals live in the module's dtype, like any buffer
    ours, theirs = create("gradvac", num_tasks=k, beta=0.3).double(), tja.GradVac(beta=0.3)
    gen = torch.Generator().manual_seed(2)
    for step in range(steps):
        jac = _jacobian(k, 30, seed=20 + step)
        orders = random_orders(k, gen, torch.device("cpu"))
        perms = []
        for i in range(k):
            others = [j for j in range(k) if j != i]
            perms.append([others.index(j) for j in orders[i].tolist()])
        monkeypatch.setattr(torch, "randperm", _ScriptedRandperm(perms))
        expected = theirs(jac)
        monkeypatch.undo()
        monkeypatch.setattr(gradvac_module, "random_orders", lambda *a, o=orders: o)
        torch.testing.assert_close(ours.aggregate(jac), expected, rtol=1e-5, atol=1e-7)
        monkeypatch.undo()
    torch.testing.assert_close(ours.targets, theirs.gramian_weighting._phi_t, rtol=1e-5, atol=1e-7)


def test_gradvac_keeps_its_targets_and_its_draws_in_the_state_dict():
    """(Its exact resume from ``state_dict`` is the contract's, test_balancing_contract.py.)"""
    k = 5
    original = create("gradvac", num_tasks=k, seed=4)
    for s in range(3):
        original.weights_from_gramian(_gramian(_jacobian(k, 20, seed=30 + s)))
    assert set(original.state_dict()) == {"targets", "_extra_state"}
    assert torch.equal(reload(original, create("gradvac", num_tasks=k)).targets, original.targets)


# ----------------------------------------------------------------------------------------------
# imtl-g


def _imtl_closed_form(jac):
    """The paper's closed form, literally: α_{2:K} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 − Σ α_{2:K}."""
    g = jac.numpy()
    u = g / np.linalg.norm(g, axis=1, keepdims=True)
    d_mat, u_mat = g[0] - g[1:], u[0] - u[1:]
    alpha = g[0] @ u_mat.T @ np.linalg.inv(d_mat @ u_mat.T)
    return torch.from_numpy(np.concatenate([[1 - alpha.sum()], alpha]))


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_imtl_g_equal_projections_weights_sum_to_one_and_paper_closed_form(k):
    jac = _jacobian(k, 50, scales=torch.logspace(-1, 1, k), seed=k)
    weights = create("imtl-g").weights_from_gramian(jac @ jac.T)
    direction = weights @ jac
    projections = _units(jac) @ direction
    torch.testing.assert_close(projections, projections.mean().expand(k), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(weights, _imtl_closed_form(jac), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_imtl_g_matches_torchjd(k, tja):
    jac = _jacobian(k, 50, scales=torch.logspace(-1, 1, k), seed=k)
    direction = create("imtl-g").aggregate(jac)
    torch.testing.assert_close(direction, tja.IMTLG()(jac), rtol=1e-5, atol=1e-8)


def test_imtl_g_degenerate_inputs():
    g = _jacobian(1, 30, seed=11)
    torch.testing.assert_close(create("imtl-g").aggregate(g.repeat(4, 1)), g[0])  # d = g
    jac = _jacobian(4, 30, seed=12)
    jac[1] = 0  # a zero gradient drops out: equal projections on the other three
    weights = create("imtl-g").weights_from_gramian(jac @ jac.T)
    assert weights[1].abs() < 1e-12
    proj = _units(jac[[0, 2, 3]]) @ (weights @ jac)
    torch.testing.assert_close(proj, proj.mean().expand(3))


# ----------------------------------------------------------------------------------------------
# aligned-mtl


@pytest.mark.parametrize(("k", "rank"), [(2, 2), (5, 5), (6, 3), (10, 10)])
def test_aligned_mtl_balanced_matrix_has_equal_singular_values_on_its_span(k, rank):
    jac = _jacobian(k, 60, rank=rank, scales=torch.logspace(-1, 1, k), seed=k + rank)
    gram = jac @ jac.T
    balance = balance_transformation(gram)
    balanced = balance.T @ jac  # Ĵ = Bᵀ J, rows: the balanced task gradients
    singular = torch.linalg.svdvals(balanced)
    smallest = torch.linalg.svdvals(jac)[rank - 1]  # σ_R of J, the level Ĵ is balanced to
    torch.testing.assert_close(singular[:rank], smallest.expand(rank), rtol=1e-7, atol=0)
    assert (singular[rank:] < 1e-6 * smallest).all()
    # the update is the sum of the balanced gradients (w = 1), i.e. K × torchjd's mean
    direction = create("aligned-mtl").aggregate(jac)
    torch.testing.assert_close(direction, balanced.sum(0))


@pytest.mark.parametrize(("k", "rank"), [(2, 2), (5, 5), (6, 3), (10, 10)])
def test_aligned_mtl_is_k_times_torchjds_mean(k, rank, tja):
    jac = _jacobian(k, 60, rank=rank, scales=torch.logspace(-1, 1, k), seed=k + rank)
    direction = create("aligned-mtl").aggregate(jac)
    torch.testing.assert_close(direction, k * tja.AlignedMTL()(jac), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("scale", ["median", "rmse"])
def test_aligned_mtl_other_scales_match_torchjd(scale, tja):
    jac = _jacobian(6, 40, scales=torch.logspace(-1, 1, 6), seed=13)
    ours = create("aligned-mtl", scale=scale).aggregate(jac)
    torch.testing.assert_close(ours, 6 * tja.AlignedMTL(scale_mode=scale)(jac), rtol=1e-5, atol=0)


def test_aligned_mtl_scale_behaviour():
    # orthogonal gradients are all rescaled to the smallest norm
    norms = torch.tensor([0.5, 2.0, 8.0], dtype=F64)
    jac = torch.zeros(3, 9, dtype=F64)
    for i in range(3):
        jac[i, 3 * i : 3 * i + 3] = norms[i] / 3**0.5
    weights = create("aligned-mtl").weights_from_gramian(jac @ jac.T)
    torch.testing.assert_close(weights, norms.min() / norms)
    # positively homogeneous: J → cJ gives d → c·d
    dense = _jacobian(4, 40, seed=14)
    torch.testing.assert_close(
        create("aligned-mtl").aggregate(7.0 * dense), 7.0 * create("aligned-mtl").aggregate(dense)
    )
    # identical gradients: rank 1, B = 11ᵀ/K, so the sum K·g
    g = _jacobian(1, 30, seed=15)
    torch.testing.assert_close(create("aligned-mtl").aggregate(g.repeat(4, 1)), 4 * g[0])


# ----------------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_config_is_conflict_free_and_equal_angle(k):
    jac = _jacobian(k, 50, scales=torch.logspace(-1, 1, k), seed=40 + k)
    direction = create("config").aggregate(jac)
    projections = _units(jac) @ direction
    assert (projections > 0).all()
    torch.testing.assert_close(projections, projections.mean().expand(k), rtol=1e-9, atol=0)
    unit = direction / direction.norm()
    torch.testing.assert_close(direction.norm(), (jac @ unit).sum())  # length projection


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_config_matches_torchjd(k, tja):
    # torchjd's ConFIG: Eq. 2 with pinv of the K×P unit matrix and the length Σ g_kᵀ g_u over
    # the raw gradients, the same definition as ours computed on the K×K Gramian.
    jac = _jacobian(k, 50, scales=torch.logspace(-1, 1, k), seed=40 + k)
    direction = create("config").aggregate(jac)
    torch.testing.assert_close(direction, tja.ConFIG()(jac), rtol=1e-5, atol=1e-8)
    j32 = jac.float()
    torch.testing.assert_close(
        create("config").aggregate(j32), tja.ConFIG()(j32), rtol=1e-3, atol=1e-4
    )


def test_config_identical_gradients_give_their_sum():
    g = _jacobian(1, 30, seed=16)
    torch.testing.assert_close(create("config").aggregate(g.repeat(3, 1)), 3 * g[0])


# ----------------------------------------------------------------------------------------------
# permutation equivariance of the deterministic symmetric methods


@pytest.mark.parametrize("name", ["imtl-g", "aligned-mtl", "config"])
def test_permutation_equivariance(name):
    jac = _jacobian(6, 40, scales=torch.logspace(-1, 1, 6), seed=17)
    for perm in (torch.tensor([5, 3, 1, 0, 2, 4]), torch.tensor([1, 0, 2, 3, 5, 4])):
        assert_permutation_equivariant(
            create(name).weights_from_gramian, jac, perm, weights_tol=(1e-7, 1e-10)
        )


# ----------------------------------------------------------------------------------------------
# graddrop


def test_graddrop_matches_torchjd_with_the_same_draws(tja):
    # Same definition as torchjd (on the parameters' Jacobian, f = identity); seed s draws what
    # the global CPU RNG draws after torch.manual_seed(s).
    jac = _jacobian(4, 500, seed=18)
    for leak in (0.0, [0.0, 0.3, 1.0, 0.5]):
        ours = create("graddrop", num_tasks=4, seed=5, leak=leak).aggregate(jac)
        torch.manual_seed(5)
        leak_tensor = None if leak == 0.0 else torch.tensor(leak, dtype=F64)
        torch.testing.assert_close(ours, tja.GradDrop(leak=leak_tensor)(jac))


def test_graddrop_keeps_one_sign_with_probability_equal_to_purity():
    # one coordinate pattern repeated: positives sum to 3, negatives to -1.5: P = ½(1 + 1.5/4.5)
    column = torch.tensor([2.0, 1.0, -1.5], dtype=F64)
    jac = column[:, None].repeat(1, 20000)
    out = create("graddrop", seed=1).aggregate(jac)
    positive = out == 3.0
    assert (positive | (out == -1.5)).all()
    assert abs(positive.double().mean().item() - (0.5 * (1 + 1.5 / 4.5))) < 0.015
    # same-sign coordinates are always kept; leak 1 is the plain sum
    same_sign = _jacobian(3, 100, seed=19).abs()
    torch.testing.assert_close(create("graddrop").aggregate(same_sign), same_sign.sum(0))
    torch.testing.assert_close(create("graddrop").aggregate(-same_sign), -same_sign.sum(0))
    mixed = _jacobian(3, 100, seed=20)
    torch.testing.assert_close(create("graddrop", leak=1.0).aggregate(mixed), mixed.sum(0))


def test_graddrop_is_reproducible_by_seed():
    """(Its exact resume from ``state_dict`` is the contract's, test_balancing_contract.py.)"""
    jac = _jacobian(3, 200, seed=21)
    a, b = create("graddrop", seed=3), create("graddrop", seed=3)
    assert torch.equal(a.aggregate(jac), b.aggregate(jac))


# ----------------------------------------------------------------------------------------------
# db-mtl


def _db_mtl_reference(jacs, losses, beta, sigma):
    """DB-MTL as in LibMTL (without its 1e-8 epsilons): the EMA of ∇log L, max-norm rescaled."""
    ema, out = torch.zeros_like(jacs[0]), []
    for t, (jac, loss) in enumerate(zip(jacs, losses), start=1):
        grads = jac / loss[:, None]
        beta_t = beta / t**sigma
        ema = grads + beta_t * (ema - grads)
        norms = ema.norm(dim=1)
        out.append(((norms.max() / norms)[:, None] * ema).sum(0))
    return out


@pytest.mark.parametrize(("beta", "sigma"), [(0.9, 0.0), (0.9, 0.5), (0.0, 0.0)])
def test_db_mtl_matches_its_definition_over_steps(beta, sigma):
    k = 3
    jacs = [_jacobian(k, 40, scales=[0.1, 1.0, 10.0], seed=50 + s) for s in range(4)]
    losses = [_losses(k, seed=s) * 10 ** torch.arange(k, dtype=F64) for s in range(4)]
    method = create("db-mtl", num_tasks=k, beta=beta, beta_sigma=sigma)
    expected = _db_mtl_reference(jacs, losses, beta, sigma)
    for jac, loss, exp in zip(jacs, losses, expected):
        torch.testing.assert_close(method.aggregate(jac, loss), exp)


def test_db_mtl_balances_loss_scale_and_gradient_norms():
    k = 3
    jac, losses = _jacobian(k, 40, seed=60), _losses(k)
    base = create("db-mtl", num_tasks=k, beta=0.0).aggregate(jac, losses)
    # scaling a task's loss (and so its gradient) changes nothing: log L_k shifts by a constant
    scale = torch.tensor([1.0, 1e3, 1e-2], dtype=F64)
    scaled = create("db-mtl", num_tasks=k, beta=0.0).aggregate(jac * scale[:, None], losses * scale)
    torch.testing.assert_close(scaled, base)
    # orthogonal gradients: every task's part of the update has the largest norm
    ortho = torch.zeros(k, 6, dtype=F64)
    for i in range(k):
        ortho[i, 2 * i] = 1.0 + i
    out = create("db-mtl", num_tasks=k, beta=0.0).aggregate(ortho, torch.ones(k, dtype=F64))
    parts = torch.stack([out[2 * i : 2 * i + 2].norm() for i in range(k)])
    torch.testing.assert_close(parts, torch.full_like(parts, 3.0))
    # a non-positive loss (log undefined) contributes nothing that step; stays finite
    out = create("db-mtl", num_tasks=k).aggregate(jac, torch.tensor([1.0, 0.0, -1.0], dtype=F64))
    torch.testing.assert_close(out, 0.1 * jac[0])


def test_db_mtl_needs_losses_and_a_stable_jacobian_shape():
    method = create("db-mtl", num_tasks=2)
    with pytest.raises(ValueError, match="loss values"):
        method.aggregate(_jacobian(2, 10))
    method.aggregate(_jacobian(2, 10), _losses(2))
    with pytest.raises(ValueError, match="shared parameters changed"):
        method.aggregate(_jacobian(2, 11), _losses(2))


def test_db_mtl_state_matters_after_a_reload():
    """Its running average is state (its exact resume is the contract's,
    test_balancing_contract.py): a reloaded method differs from a fresh one."""
    k = 3
    jacs = [_jacobian(k, 40, seed=70 + s) for s in range(3)]
    losses = [_losses(k, seed=s) for s in range(3)]
    original = create("db-mtl", num_tasks=k, beta_sigma=0.5)
    for jac, loss in zip(jacs[:2], losses[:2]):
        original.aggregate(jac, loss)
    resumed = reload(original, create("db-mtl", num_tasks=k, beta_sigma=0.5))
    fresh = create("db-mtl", num_tasks=k, beta_sigma=0.5)  # the state does matter
    assert not torch.equal(
        fresh.aggregate(jacs[2], losses[2]), resumed.aggregate(jacs[2], losses[2])
    )


# ----------------------------------------------------------------------------------------------
# rank-deficient and scaled inputs stay well-defined everywhere


@pytest.mark.parametrize("name", ["pcgrad", "imtl-g", "aligned-mtl", "config"])
@pytest.mark.parametrize(("k", "rank"), list(itertools.product([3, 8], [1, 2])))
def test_rank_deficient_float32_inputs_stay_finite(name, k, rank):
    jac = _jacobian(
        k, 2000, rank=rank, scales=torch.logspace(-3, 3, k), seed=k * rank, dtype=torch.float32
    )
    out = create(name).aggregate(jac)
    assert torch.isfinite(out).all()
    assert out.norm() <= jac.norm(dim=1).sum() * 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", METHODS)
def test_runs_on_cuda_in_the_inputs_dtype(name):
    jac = _jacobian(4, 1000, seed=80, dtype=torch.float32).cuda()
    method = _make(name, 4).cuda()
    out = _run(method, jac, _losses(4).float().cuda())
    assert out.device == jac.device and out.dtype == jac.dtype and torch.isfinite(out).all()
    if name in ("pcgrad", "gradvac", "graddrop"):
        state = method.state_dict()
        assert "cuda" in state["_extra_state"]["rng"]
