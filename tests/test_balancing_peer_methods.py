"""The methods torchjd 0.18 has that mtlkit added in issue 23: sdmgrad, modo, excess-mtl, cr-mogm,
pcd, krum, trimmed-mean, cosmos and pbi.

Each is compared with torchjd (dev-only) on seeded random float64 Jacobians over several steps (the
stateful ones carry their state from step to step): the directions agree to cos ≥ 1 − 1e-9, and
where both sides compute the same closed form the results agree to float64 rounding. The robust
aggregators' defining property is checked directly: an injected outlier row does not move them.
"""

from __future__ import annotations

import pytest
import torch

from mtlkit.balancing import create

F64 = torch.float64
STEPS = 5
COSINE = 1 - 1e-9
"""The issue's bar. Both sides compute in float64 (unit roundoff 1.1e-16); a direction error ε
costs ε²/2 of cosine, so this admits the solvers' relative tolerances (1e-12 on the objective,
about 1e-6 on the direction) and nothing like a different definition."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tja():
    return pytest.importorskip("torchjd.aggregation")


def _jacobians(k, p=40, *, rank=None, seed=0):
    """STEPS seeded (k, p) float64 Jacobians of the given rank, rows of different sizes."""
    gen = torch.Generator().manual_seed(seed)
    rank = k if rank is None else rank
    out = []
    for _ in range(STEPS):
        jac = torch.randn(k, rank, generator=gen, dtype=F64) @ torch.randn(
            rank, p, generator=gen, dtype=F64
        )
        out.append(jac * (0.2 + torch.rand(k, 1, generator=gen, dtype=F64)))
    return out


def _cosine(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def _assert_same_direction(ours, theirs):
    assert ours.norm() > 0 and theirs.norm() > 0
    assert _cosine(ours, theirs) >= COSINE


GRAMIAN_CASES = [
    ("modo", {"gamma": 0.05, "rho": 0.1}, lambda t: t.MoDoWeighting(gamma=0.05, rho=0.1)),
    ("sdmgrad", {}, lambda t: t.SDMGradWeighting()),
    (
        "sdmgrad",
        {"lr": 2.0, "momentum": 0.0, "n_iter": 7, "lambda_": 1.0, "pref_vector": [3, 1, 0, 1, 1]},
        lambda t: t.SDMGradWeighting(
            lr=2.0,
            momentum=0.0,
            n_iter=7,
            lambda_=1.0,
            pref_vector=torch.tensor([0.5, 1 / 6, 0.0, 1 / 6, 1 / 6], dtype=F64),
        ),
    ),
    ("pcd", {}, lambda t: t.PCDWeighting()),
    (
        "pcd",
        {"tau": [0.5, 0.0, 0.2, 0.9], "beta": 0.5},
        lambda t: t.PCDWeighting(tau=torch.tensor([0.5, 0.0, 0.2, 0.9], dtype=F64), beta=0.5),
    ),
    ("krum", {"n_byzantine": 1, "n_selected": 2}, lambda t: t.KrumWeighting(1, 2)),
    ("krum", {}, lambda t: t.KrumWeighting(0)),
    (
        "cr-mogm",
        {"weighting": "modo", "weighting_options": {"gamma": 0.05}, "alpha": 0.7},
        lambda t: t.CRMOGMWeighting(t.MoDoWeighting(gamma=0.05), alpha=0.7),
    ),
    (
        "cr-mogm",
        {"weighting": "krum", "initial_weights": [0.1, 0.2, 0.3, 0.2, 0.2], "alpha": 0.5},
        lambda t: t.CRMOGMWeighting(
            t.KrumWeighting(0),
            alpha=0.5,
            initial_weights=torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2], dtype=F64),
        ),
    ),
]


@pytest.mark.parametrize(("name", "options", "reference"), GRAMIAN_CASES)
@pytest.mark.parametrize("rank", [5, 3])
def test_gramian_methods_agree_with_torchjd_step_after_step(tja, name, options, reference, rank):
    ours, theirs = create(name, num_tasks=5, **options), reference(tja)
    for jac in _jacobians(5, rank=rank, seed=rank):
        gramian = jac @ jac.T
        d_ours = ours.weights_from_gramian(gramian) @ jac
        d_theirs = theirs(gramian) @ jac
        _assert_same_direction(d_ours, d_theirs)
        torch.testing.assert_close(d_ours.norm(), d_theirs.norm(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("warmup", [0, 2])
def test_excess_mtl_agrees_with_torchjd_step_after_step(tja, warmup):
    ours = create("excess-mtl", num_tasks=4, robust_step_size=0.5, n_warmup_steps=warmup)
    theirs = tja.ExcessMTL(robust_step_size=0.5, n_warmup_steps=warmup)
    for jac in _jacobians(4, seed=3):
        # the same arithmetic in the same order: float64 rounding apart
        torch.testing.assert_close(ours.aggregate(jac), theirs(jac), rtol=1e-12, atol=0)


@pytest.mark.parametrize("trim", [0, 1, 2])
def test_trimmed_mean_agrees_with_torchjd(tja, trim):
    for jac in _jacobians(6, seed=trim):
        got = create("trimmed-mean", num_tasks=6, trim_number=trim).aggregate(jac)
        torch.testing.assert_close(got, tja.TrimmedMean(trim)(jac), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("name", "options", "reference"),
    [
        ("cosmos", {"lambda_": 2.0, "weights": [0.2, 0.5, 0.3]}, lambda s, r: s.COSMOS(2.0, r)),
        ("pbi", {"theta": 5.0, "weights": [0.2, 0.5, 0.3]}, lambda s, r: s.PBI(5.0, r)),
        (
            "pbi",
            {"theta": 0.5, "weights": [1, 1, 2], "reference": [0.1, -0.2, 0.0]},
            lambda s, r: s.PBI(0.5, r, torch.tensor([0.1, -0.2, 0.0], dtype=F64)),
        ),
    ],
)
def test_scalarisations_agree_with_torchjd_in_value_and_gradient(name, options, reference):
    scalarization = pytest.importorskip("torchjd.scalarization")
    pref = torch.tensor(options["weights"], dtype=F64)
    theirs = reference(scalarization, pref / (pref.sum() if name == "cosmos" else 1.0))
    ours = create(name, num_tasks=3, **options)
    gen = torch.Generator().manual_seed(5)
    for _ in range(STEPS):
        values = (torch.rand(3, generator=gen, dtype=F64) + 0.1).requires_grad_()
        total, weights = ours.combine(values)
        (grad,) = torch.autograd.grad(total, values)
        expected = theirs(values)
        (expected_grad,) = torch.autograd.grad(expected, values)
        # PBI: torchjd's d₂ = √(‖p‖² + 1e-12) differs from ‖p‖ by 1e-12/(2‖p‖) and its gradient
        # by θ·1e-12/(2‖p‖²) at most; COSMOS differs by rounding only
        shift = _pbi_shift(values.detach(), options) if name == "pbi" else 0.0
        torch.testing.assert_close(total, expected, rtol=1e-12, atol=shift)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-15 + shift)
        torch.testing.assert_close(weights, grad, rtol=1e-12, atol=1e-15)


def _pbi_shift(values, options):
    """θ·1e-12/(2‖p‖²)·2, bounding torchjd's smoothing of d₂ in value and gradient."""
    w = torch.tensor(options["weights"], dtype=F64)
    w = w / w.norm()
    shifted = values - torch.tensor(options.get("reference", [0.0] * 3), dtype=F64)
    off = shifted - (shifted @ w) * w
    return max(options["theta"], 1.0) * 1e-12 / float(off @ off)


def test_cosmos_rescales_torchjds_weights_to_sum_one_only_in_the_linear_part():
    """The preference is used as given (torchjd's r): uniform by default, and λ = 0 is the
    weighted sum."""
    values = torch.tensor([0.3, 1.2, 0.7], dtype=F64)
    total, weights = create("cosmos", num_tasks=3, lambda_=0.0).combine(values)
    torch.testing.assert_close(total, values.mean())
    torch.testing.assert_close(weights, torch.full((3,), 1 / 3, dtype=F64))


def test_pbi_on_the_preference_ray_has_the_ray_as_gradient():
    """p = 0: d₂ has no gradient; the least-norm subgradient 0 leaves ŵ, finite."""
    values = torch.tensor([0.2, 0.4], dtype=F64, requires_grad=True)
    total, weights = create("pbi", num_tasks=2, weights=[1, 2]).combine(values)
    (grad,) = torch.autograd.grad(total, values)
    ray = torch.tensor([1.0, 2.0], dtype=F64) / 5**0.5
    torch.testing.assert_close(grad, ray)
    torch.testing.assert_close(weights, ray)
    torch.testing.assert_close(total, values.detach() @ ray)


def _honest_and_outlier(k, seed):
    """k − 1 noisy copies of one gradient, and a row of random direction to scale up."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(30, generator=gen, dtype=F64)
    honest = g + 0.1 * torch.randn(k - 1, 30, generator=gen, dtype=F64)
    return honest, torch.randn(30, generator=gen, dtype=F64)


@pytest.mark.parametrize("position", [0, 3, 5])
def test_krum_never_selects_an_injected_outlier(position):
    honest, outlier = _honest_and_outlier(6, position)
    krum = create("krum", num_tasks=6, n_byzantine=1, n_selected=5)  # Multi-Krum: K − f rows
    results = []
    for scale in (10.0, 1e3, 1e6):
        jac = torch.cat([honest[:position], scale * outlier[None], honest[position:]])
        weights = krum.weights_from_gramian(jac @ jac.T)
        assert weights[position] == 0
        results.append(weights @ jac)
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)
    torch.testing.assert_close(results[2], results[0], rtol=0, atol=0)
    torch.testing.assert_close(results[0], honest.mean(0), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("position", [0, 2, 4])
def test_trimmed_mean_ignores_an_injected_outlier(position):
    honest, outlier = _honest_and_outlier(5, position)
    trimmed = create("trimmed-mean", num_tasks=5, trim_number=1)
    low, high = honest.min(0).values, honest.max(0).values
    results = []
    for scale in (1e2, 1e4, 1e8):
        jac = torch.cat([honest[:position], scale * outlier[None], honest[position:]])
        d = trimmed.aggregate(jac)
        assert ((d >= low) & (d <= high)).all(), "a coordinate left the honest rows' range"
        results.append(d)
    # the outlier is trimmed at every coordinate: scaling it further changes nothing
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)
    torch.testing.assert_close(results[2], results[0], rtol=0, atol=0)


def test_pcd_guarantees_each_secondary_task_its_share():
    """The defining constraints, in the normalised gradients: g̃ⱼᵀd̃ ≥ τ‖g̃ⱼ‖² for j ≥ 2,
    checked on the first step (where sᵢ = 1/√(‖gᵢ‖² + ε))."""
    tau = 0.3
    for jac in _jacobians(4, p=12, seed=11):
        pcd = create("pcd", num_tasks=4, tau=tau, eps=0.0)
        weights = pcd.weights_from_gramian(jac @ jac.T)
        d = weights @ jac
        units = jac / jac.norm(dim=1, keepdim=True)
        d_tilde = d / (weights[0] * jac[0].norm())  # d = c·d̃ and weights[0] = c·s₁, s₁ = 1/‖g₁‖
        progress = units[1:] @ d_tilde
        # the interior point's duality gap (1e-12 relative) bounds each violation far below this
        assert (progress >= tau - 1e-9).all(), progress
        assert (progress[1:] > tau + 1e-3).any() or (progress <= tau + 1e-6).any()
        torch.testing.assert_close(d.norm(), jac[0].norm(), rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("name", "options", "needle"),
    [
        ("krum", {"n_byzantine": 1}, "n_byzantine \\+ 3"),
        ("krum", {"n_selected": 4}, "n_selected"),
        ("trimmed-mean", {"trim_number": 2}, "trim_number"),
        ("pcd", {"tau": [0.1]}, "tau has 1 entries"),
        ("pcd", {"tau": 1.5}, "tau"),
        ("sdmgrad", {"momentum": 1.0}, "momentum"),
        ("modo", {"gamma": 0.0}, "gamma"),
        ("excess-mtl", {"n_warmup_steps": -1}, "n_warmup_steps"),
        ("cr-mogm", {"weighting": "ew"}, "Gramian weighting"),
        ("cr-mogm", {"weighting": "nope"}, "unknown balancing method"),
        ("cosmos", {"weights": [1, 1]}, "2 entries"),
        ("pbi", {"reference": [0.0]}, "reference has 1 entries"),
    ],
)
def test_bad_options_are_named(name, options, needle):
    with pytest.raises(ValueError, match=needle):
        create(name, num_tasks=3, **options)
