"""Adaptive loss weightings (uw, dwa, rlw, gls, gradnorm, famo, imtl-l, stch) against their papers.

Every method is checked against a hand computation of its defining equation on chosen loss values,
its gradient against ∇(Σ wₖLₖ) with the weights it reports, and (where it keeps state) an exact
resume through ``torch.save`` / ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from balancing_checks import assert_resumes_exactly
from mtlkit.balancing import LossWeighting, available, create
from mtlkit.balancing.methods._common import adam_step_
from mtlkit.balancing.methods.gradnorm import last_shared_weight

METHODS = ("uw", "dwa", "rlw", "gls", "gradnorm", "famo", "imtl-l", "stch")
STATEFUL = ("uw", "dwa", "rlw", "gradnorm", "famo", "imtl-l", "stch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Tiny(nn.Module):
    """A shared tanh layer and one linear head per task; task k's loss is scaled by scales[k]."""

    def __init__(self, num_tasks: int = 2, scales: tuple[float, ...] | None = None, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.trunk = nn.Linear(4, 3)
            self.heads = nn.ModuleList(nn.Linear(3, 1) for _ in range(num_tasks))
        self.scales = scales or (1.0,) * num_tasks

    def shared_parameters(self):
        return self.trunk.parameters()

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        features = torch.tanh(self.trunk(x))
        losses = [
            scale * ((head(features).squeeze(-1) - y[:, k]) ** 2).mean()
            for k, (head, scale) in enumerate(zip(self.heads, self.scales))
        ]
        return losses, features


def _batch(step: int, num_tasks: int = 2):
    gen = torch.Generator().manual_seed(1000 + step)
    return torch.randn(8, 4, generator=gen), torch.randn(8, num_tasks, generator=gen)


def _leaf_losses(values):
    return torch.tensor(values, dtype=torch.float32, requires_grad=True)


# --------------------------------------------------------------------------------------------
# registry, options, validation


def test_every_method_is_registered_as_a_loss_weighting_with_its_options():
    infos = {info.name: info for info in available()}
    for name in METHODS:
        assert name in infos, name
        assert infos[name].family == "loss weighting"
        assert infos[name].needs == "losses"
    assert infos["dwa"].options == {"temperature": 2.0}
    assert infos["gradnorm"].options == {"alpha": 1.5, "lr": 0.025, "optimizer": "adam"}
    assert infos["famo"].options == {"gamma": 0.01, "w_lr": 0.025, "min_losses": 0.0}
    assert infos["rlw"].options == {"distribution": "normal", "seed": 0}
    assert infos["stch"].options == {"mu": 1.0, "warmup_epochs": 5, "preferences": None}


@pytest.mark.parametrize("name", ["uw", "dwa", "gradnorm", "famo", "imtl-l", "stch"])
def test_per_task_state_needs_num_tasks(name):
    with pytest.raises(ValueError, match="num_tasks=K"):
        create(name)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("dwa", {"temperature": 0.0}, "temperature must be a number in"),
        ("dwa", {"temperature": "hot"}, "temperature must be a number"),
        ("dwa", {"temp": 2.0}, "no option 'temp'"),
        ("rlw", {"distribution": "cauchy"}, "distribution must be one of"),
        ("rlw", {"seed": -1}, "seed must be an integer"),
        ("rlw", {"seed": 1.5}, "seed must be an integer"),
        ("gradnorm", {"alpha": -0.5}, r"alpha must be a number in \[0.0, inf\]"),
        ("gradnorm", {"lr": 0.0}, r"lr must be a number in \(0.0, inf\]"),
        ("gradnorm", {"optimizer": "lbfgs"}, "optimizer must be one of"),
        ("famo", {"gamma": -1e-3}, "gamma must be a number in"),
        ("famo", {"w_lr": math.inf}, "w_lr must be a number in"),
        ("famo", {"min_losses": [0.0, 0.0, 0.0]}, "3 entries but there are 2"),
        ("stch", {"mu": 0.0}, "mu must be a number in"),
        ("stch", {"warmup_epochs": -1}, "warmup_epochs must be an integer >= 0"),
        ("stch", {"preferences": [1.0, 0.0]}, "preferences must all be > 0"),
        ("stch", {"preferences": [1.0]}, "1 entries but there are 2"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(name, options, message):
    with pytest.raises(ValueError, match=message):
        create(name, num_tasks=2, **options)


@pytest.mark.parametrize("name", METHODS)
def test_wrong_number_of_losses_is_refused(name):
    bal = create(name, num_tasks=3)
    model = _Tiny(2)
    losses, features = model(*_batch(0))
    with pytest.raises(ValueError, match="3 tasks but got 2"):
        bal.backward(losses, model.shared_parameters(), features)


# --------------------------------------------------------------------------------------------
# the gradient is Σ wₖ∇Lₖ with the reported weights


@pytest.mark.parametrize("name", METHODS)
def test_backward_equals_gradient_of_weighted_sum_with_reported_weights(name):
    options = {"warmup_epochs": 0} if name == "stch" else {}
    bal = create(name, num_tasks=2, **options)
    model = _Tiny(2, scales=(1.0, 7.0))
    params = list(model.parameters())
    for step in range(4):  # a few steps so that stateful methods leave their initial weights
        x, y = _batch(step)
        model.zero_grad()
        losses, features = model(x, y)
        info = bal.backward(losses, model.shared_parameters(), features)
        bal.epoch_end()
        got = [p.grad.clone() for p in params]
        fresh, _ = model(x, y)
        weighted = sum(w * loss for w, loss in zip(info.weights, fresh))
        expected = torch.autograd.grad(weighted, params)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
    if name in ("uw", "imtl-l"):  # their own parameters got a gradient too
        assert all(p.grad is not None for p in bal.parameters())
    else:
        assert list(bal.parameters()) == []


# --------------------------------------------------------------------------------------------
# uw and imtl-l


def test_uw_total_and_weights_follow_kendall():
    bal = create("uw", num_tasks=3)
    losses = _leaf_losses([0.5, 2.0, 4.0])
    total, weights = bal.combine(losses)
    assert total.item() == pytest.approx(6.5)  # s = 0: the plain sum
    assert torch.equal(weights, torch.ones(3))
    with torch.no_grad():
        bal.log_vars.copy_(torch.tensor([math.log(2.0), -1.0, 0.5]))
    total, weights = bal.combine(losses)
    s = [math.log(2.0), -1.0, 0.5]
    expected = sum(math.exp(-sk) * lk + sk for sk, lk in zip(s, [0.5, 2.0, 4.0]))
    assert total.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(weights, torch.exp(-torch.tensor(s)))
    total.backward()
    # ∂total/∂sₖ = 1 − e^{−sₖ}Lₖ: zero exactly at sₖ = log Lₖ
    torch.testing.assert_close(bal.log_vars.grad, 1 - torch.exp(-torch.tensor(s)) * losses.detach())
    torch.testing.assert_close(losses.grad, weights)


def test_uw_optimum_is_log_loss():
    bal = create("uw", num_tasks=2)
    losses = torch.tensor([0.25, 3.0])
    with torch.no_grad():
        bal.log_vars.copy_(losses.log())
    total, _ = bal.combine(losses)
    (grad,) = torch.autograd.grad(total, bal.log_vars)
    torch.testing.assert_close(grad, torch.zeros(2), atol=1e-6, rtol=0)


def test_imtl_l_total_weights_and_fixed_point():
    bal = create("imtl-l", num_tasks=2)
    losses = _leaf_losses([0.5, 8.0])
    total, weights = bal.combine(losses)
    assert total.item() == pytest.approx(8.5)
    assert torch.equal(weights, torch.ones(2))
    s = torch.tensor([0.3, -2.0])
    with torch.no_grad():
        bal.scales.copy_(s)
    total, weights = bal.combine(losses)
    expected = (torch.exp(s) * losses.detach() - s).sum()
    torch.testing.assert_close(total.detach(), expected)
    torch.testing.assert_close(weights, torch.exp(s))
    # minimum over s at e^{s}L = 1: every scaled loss equals 1
    with torch.no_grad():
        bal.scales.copy_(-losses.detach().log())
    total, weights = bal.combine(losses)
    (grad,) = torch.autograd.grad(total, bal.scales)
    torch.testing.assert_close(grad, torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(weights * losses.detach(), torch.ones(2))


# --------------------------------------------------------------------------------------------
# dwa


def test_dwa_is_one_for_two_epochs_then_the_softmax_of_epoch_loss_ratios():
    bal = create("dwa", num_tasks=3, temperature=2.0)
    epochs = [
        [[1.0, 2.0, 4.0], [3.0, 2.0, 2.0]],  # means 2, 2, 3
        [[1.0, 1.0, 3.0], [1.0, 2.0, 3.0], [1.0, 3.0, 3.0]],  # means 1, 2, 3
        [[0.5, 1.0, 1.5]],  # means 0.5, 1, 1.5
        [[1.0, 1.0, 1.0]],
    ]
    means = [[2.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.5, 1.0, 1.5]]
    applied = []  # the weights of every step, per epoch
    for epoch in epochs:
        applied.append([])
        for values in epoch:
            losses = _leaf_losses(values)
            total, weights = bal.combine(losses)
            assert total.item() == pytest.approx(float((weights * losses.detach()).sum()))
            applied[-1].append(weights)
        bal.epoch_end()
    for weights in applied[0] + applied[1]:
        assert torch.equal(weights, torch.ones(3))

    def dwa(prev2, prev1):  # MTAN eq. 7 written out
        e = [math.exp((b / a) / 2.0) for a, b in zip(prev2, prev1)]
        return torch.tensor([3 * x / sum(e) for x in e])

    third, fourth = applied[2][0], applied[3][0]
    torch.testing.assert_close(third, dwa(means[0], means[1]))
    torch.testing.assert_close(fourth, dwa(means[1], means[2]))
    assert third.sum().item() == pytest.approx(3.0)
    # ratios 0.5, 1, 1: the tasks whose loss did not fall get more weight, equally
    assert third[1] == third[2] > third[0]
    # ratios 0.5 for all: equal weights
    torch.testing.assert_close(fourth, torch.ones(3))


def test_dwa_ignores_an_epoch_without_steps():
    bal = create("dwa", num_tasks=2)
    bal.epoch_end()
    bal.epoch_end()
    assert bal.epochs_seen == 0
    bal.combine(_leaf_losses([1.0, 1.0]))
    bal.epoch_end()
    assert bal.epochs_seen == 1


# --------------------------------------------------------------------------------------------
# rlw


def test_rlw_weights_are_softmax_of_the_seeded_normal_sample():
    bal = create("rlw", num_tasks=4, seed=7)
    gen = torch.Generator().manual_seed(7)
    losses = _leaf_losses([1.0, 2.0, 3.0, 4.0])
    for _ in range(5):
        total, weights = bal.combine(losses)
        expected = torch.softmax(torch.randn(4, generator=gen), dim=0)
        torch.testing.assert_close(weights, expected, rtol=0, atol=0)
        assert weights.sum().item() == pytest.approx(1.0)  # on the simplex: no ×K
        assert (weights > 0).all()
        assert total.item() == pytest.approx(float((expected * losses.detach()).sum()))


def test_rlw_is_reproducible_with_a_seed_and_differs_with_another():
    def draws(seed, distribution="normal"):
        bal = create("rlw", seed=seed, distribution=distribution)
        return torch.stack([bal.combine(torch.ones(3))[1] for _ in range(4)])

    assert torch.equal(draws(3), draws(3))
    assert not torch.allclose(draws(3), draws(4))
    uniform = draws(3, "uniform")
    gen = torch.Generator().manual_seed(3)
    expected = torch.stack([torch.softmax(torch.rand(3, generator=gen), 0) for _ in range(4)])
    torch.testing.assert_close(uniform, expected)
    # successive steps draw fresh weights
    assert not torch.allclose(uniform[0], uniform[1])


# --------------------------------------------------------------------------------------------
# gls


def test_gls_is_the_geometric_mean_with_its_derivative_as_weights():
    bal = create("gls")
    values = [0.5, 2.0, 8.0]
    losses = _leaf_losses(values)
    total, weights = bal.combine(losses)
    geo = (0.5 * 2.0 * 8.0) ** (1 / 3)
    assert total.item() == pytest.approx(geo, rel=1e-6)
    torch.testing.assert_close(weights, torch.tensor([geo / (3 * v) for v in values]))
    total.backward()
    torch.testing.assert_close(losses.grad, weights)
    # tiny losses do not underflow the product
    total, weights = bal.combine(torch.full((50,), 1e-3))
    assert total.item() == pytest.approx(1e-3, rel=1e-5)


# --------------------------------------------------------------------------------------------
# stch


def test_stch_warmup_is_the_log_loss_sum_and_sets_the_normaliser():
    bal = create("stch", num_tasks=2, warmup_epochs=2, mu=0.5)
    total, weights = bal.combine(_leaf_losses([2.0, 0.5]))  # epoch 0: warm-up, not averaged
    assert total.item() == pytest.approx(math.log(2.0) + math.log(0.5), abs=1e-6)
    torch.testing.assert_close(weights, torch.tensor([0.5, 2.0]))
    bal.epoch_end()
    for values in ([1.0, 4.0], [3.0, 2.0]):  # epoch 1: the last warm-up epoch, averaged
        bal.combine(_leaf_losses(values))
    assert bal.warming_up
    bal.epoch_end()
    assert not bal.warming_up
    torch.testing.assert_close(bal.nadir, torch.tensor([2.0, 3.0]))
    # then: K·μ·log Σ exp(λₖ log(Lₖ/nadirₖ)/μ)
    losses = _leaf_losses([1.0, 6.0])
    total, weights = bal.combine(losses)
    f = [math.log(1.0 / 2.0), math.log(6.0 / 3.0)]
    expected = 2 * 0.5 * math.log(sum(math.exp(v / 0.5) for v in f))
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()
    torch.testing.assert_close(losses.grad, weights)


@pytest.mark.parametrize("prefs", [None, [1.0, 3.0, 2.0]])
def test_stch_tends_to_the_max_as_mu_shrinks_and_to_the_log_sum_as_it_grows(prefs):
    values = torch.tensor([0.6, 2.0, 1.5])
    nadir = torch.tensor([1.0, 1.0, 0.5])
    lam = torch.ones(3) if prefs is None else 3 * torch.tensor(prefs) / sum(prefs)
    f = lam * torch.log(values / nadir)

    def run(mu):
        bal = create("stch", num_tasks=3, mu=mu, warmup_epochs=0, preferences=prefs)
        bal.combine(nadir)  # first step sets the normaliser
        return bal.combine(_leaf_losses(values.tolist()))

    total, weights = run(1e-3)
    assert total.item() / 3 == pytest.approx(f.max().item(), abs=1e-2)  # K·max λₖf̃ₖ
    worst = f.argmax()
    assert (weights * values)[worst].item() == pytest.approx(3 * lam[worst].item(), rel=1e-3)
    others = [k for k in range(3) if k != worst]
    assert (weights[others] * values[others]).abs().max() < 1e-6
    total, weights = run(1e4)
    # every λₖ log Lₖ gets weight 1: the warm-up's Σ log Lₖ (up to a constant) for uniform λ
    torch.testing.assert_close(weights * values, lam, rtol=1e-3, atol=1e-3)
    # the exact formula in between
    total, weights = run(1.0)
    assert total.item() == pytest.approx(3 * torch.logsumexp(f, 0).item(), rel=1e-5)


# --------------------------------------------------------------------------------------------
# gradnorm


def _gradnorm_setup(scale: float = 100.0):
    model = _Tiny(2, scales=(1.0, scale))
    x, y = _batch(0)
    return model, x, y


def _last_layer_norms(model, x, y):
    losses, _ = model(x, y)
    layer = model.trunk.weight
    return torch.stack(
        [torch.autograd.grad(loss, layer, retain_graph=True)[0].norm() for loss in losses]
    ), torch.stack([loss.detach() for loss in losses])


def test_gradnorm_update_matches_the_paper_by_hand():
    model, x, y = _gradnorm_setup()
    bal = create("gradnorm", num_tasks=2, optimizer="sgd", lr=1e-3, alpha=1.5)
    norms, l0 = _last_layer_norms(model, x, y)
    losses, feats = model(x, y)
    info = bal.backward(losses, model.shared_parameters(), feats)
    assert torch.equal(info.weights, torch.ones(2))  # this step uses the weights before update
    # step 1: L(0) = L, r = 1, target Ḡ = mean(n); grad = sign(n − Ḡ)·n
    g = norms
    expected = torch.ones(2) - 1e-3 * torch.sign(g - g.mean()) * norms
    expected = expected.clamp_min(1e-6) * 2 / expected.clamp_min(1e-6).sum()
    torch.testing.assert_close(bal.weights, expected)
    assert bal.weights.sum().item() == pytest.approx(2.0)
    assert bal.weights[1] < 1 < bal.weights[0]  # the task with the larger gradient loses weight
    # step 2 on another batch: targets Ḡ·rₖ^α with rₖ from Lₖ/Lₖ(0)
    w = bal.weights.clone()
    x2, y2 = _batch(1)
    norms2, l2 = _last_layer_norms(model, x2, y2)
    losses, feats = model(x2, y2)
    model.zero_grad()
    info = bal.backward(losses, model.shared_parameters(), feats)
    assert torch.equal(info.weights, w)
    ratio = l2 / l0
    r = ratio / ratio.mean()
    gk = w * norms2
    grad = torch.sign(gk - gk.mean() * r**1.5) * norms2
    expected = (w - 1e-3 * grad).clamp_min(1e-6)
    expected = expected * 2 / expected.sum()
    torch.testing.assert_close(bal.weights, expected)


@pytest.mark.parametrize(
    ("alpha", "moved"),
    [
        # r = [0.5, 1.5], G = [0.2, 1.4], Ḡ = 0.8: targets 0.8·r^α
        (1.0, [1.02, 0.86]),  # targets [0.4, 1.2]: task 2 above its target, w₂ falls
        (1.5, [1.02, 1.14]),  # targets [0.283, 1.470]: task 2 below its target, w₂ rises
    ],
)
def test_gradnorm_targets_are_mean_norm_times_inverse_training_rate_to_the_alpha(alpha, moved):
    bal = create("gradnorm", num_tasks=2, alpha=alpha, optimizer="sgd", lr=0.1)
    bal.update_weights(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0]))  # sets L(0); G = Ḡ
    torch.testing.assert_close(bal.weights, torch.ones(2))
    bal.update_weights(torch.tensor([1.0, 3.0]), torch.tensor([0.2, 1.4]))
    expected = torch.tensor(moved)
    torch.testing.assert_close(bal.weights, 2 * expected / expected.sum())


@pytest.mark.slow
def test_gradnorm_equalises_the_gradient_norms_of_the_last_shared_layer():
    model, x, y = _gradnorm_setup(scale=5.0)
    bal = create("gradnorm", num_tasks=2)  # Adam, lr 0.025
    norms, _ = _last_layer_norms(model, x, y)
    start = (norms.max() / norms.min()).item()
    assert start > 10
    gaps = []
    for _ in range(150):  # the model stays fixed: only the weights move
        losses, feats = model(x, y)
        model.zero_grad()
        bal.backward(losses, model.shared_parameters(), feats)
        g = bal.weights * norms
        gaps.append((g.max() / g.min()).item())
        assert bal.weights.sum().item() == pytest.approx(2.0, rel=1e-6)
    assert gaps[0] > gaps[10] > gaps[20]  # steadily towards equal norms
    assert max(gaps[-20:]) < 1.3 < start  # then close to equal: w₂/w₁ ≈ ‖∇L₁‖/‖∇L₂‖


def test_gradnorm_uses_the_last_shared_weight_matrix():
    layers = [torch.zeros(3, 4), torch.zeros(3), torch.zeros(2, 3), torch.zeros(2)]
    assert last_shared_weight(layers) is layers[2]
    vectors = [torch.zeros(3), torch.zeros(2)]
    assert last_shared_weight(vectors) is vectors[1]


def test_gradnorm_needs_shared_parameters():
    model, x, y = _gradnorm_setup()
    losses, feats = model(x, y)
    with pytest.raises(ValueError, match="shared_params"):
        create("gradnorm", num_tasks=2).backward(losses, [], feats)


def test_internal_adam_matches_torch_adam():
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(5, generator=gen)
    ref = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.03, weight_decay=0.01)
    mine, m, v = start.clone(), torch.zeros(5), torch.zeros(5)
    for step in range(1, 8):
        grad = torch.randn(5, generator=gen)
        ref.grad = grad.clone()
        opt.step()
        adam_step_(mine, grad, m, v, step, lr=0.03, weight_decay=0.01)
        torch.testing.assert_close(mine, ref.detach(), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------
# famo


def test_famo_matches_the_official_update_and_weights_stay_on_the_simplex():
    seq = [[1.0, 2.0, 0.5], [0.5, 1.9, 0.45], [0.3, 1.85, 0.4], [0.2, 1.8, 0.39]]
    bal = create("famo", num_tasks=3, gamma=0.01, w_lr=0.025)
    # the official famo.py update, with torch's own Adam and autograd through the softmax
    logits = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.025, weight_decay=0.01)
    prev = None
    for values in seq:
        losses = _leaf_losses(values)
        if prev is not None:
            delta = (prev + 1e-8).log() - (losses.detach() + 1e-8).log()
            (d,) = torch.autograd.grad(torch.softmax(logits, -1), logits, grad_outputs=delta)
            opt.zero_grad()
            logits.grad = d
            opt.step()
        prev = losses.detach()
        total, weights = bal.combine(losses)
        z = torch.softmax(logits.detach(), -1)
        torch.testing.assert_close(bal.task_weights, z, rtol=1e-6, atol=1e-7)
        d_k = losses.detach() + 1e-8
        c = (z / d_k).sum()
        torch.testing.assert_close(total.detach(), (z / c * d_k.log()).sum())
        torch.testing.assert_close(weights, z / (c * d_k))
        assert weights.sum().item() == pytest.approx(1.0)
        assert z.sum().item() == pytest.approx(1.0)
        assert (weights > 0).all()
        total.backward()
        torch.testing.assert_close(losses.grad, weights)


def test_famo_first_step_weights_are_inverse_losses():
    bal = create("famo", num_tasks=2)
    _, weights = bal.combine(_leaf_losses([1.0, 3.0]))
    torch.testing.assert_close(weights, torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(bal.task_weights, torch.tensor([0.5, 0.5]))


def test_famo_gives_weight_to_the_task_whose_loss_decreases_slower():
    bal = create("famo", num_tasks=2)
    for t in range(30):
        fast = 2.0 * 0.9**t
        slow = 2.0 * 0.99**t
        bal.combine(_leaf_losses([fast, slow]))
    z = bal.task_weights
    assert z[1] > 0.6 > z[0]
    # with min_losses, the decrease is measured above that floor
    bal = create("famo", num_tasks=2, min_losses=[0.0, 1.0])
    for t in range(30):
        bal.combine(_leaf_losses([2.0 * 0.95**t, 1.0 + 1.0 * 0.8**t]))
    assert bal.task_weights[0] > bal.task_weights[1]


# --------------------------------------------------------------------------------------------
# exact resume


def _options(name):
    return {"stch": {"warmup_epochs": 1}, "rlw": {"seed": 5}}.get(name, {})


def _train(bal, model, steps, start):
    trace = []
    params = [*model.parameters(), *bal.parameters()]
    for step in range(start, start + steps):
        x, y = _batch(step)
        for p in params:
            p.grad = None
        losses, feats = model(x, y)
        info = bal.backward(losses, model.shared_parameters(), feats)
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.sub_(0.05 * p.grad)
        if step % 3 == 2:
            bal.epoch_end()
        trace.append(info.weights.clone())
    return trace, [p.detach().clone() for p in params]


class _Run(nn.Module):
    """A balancer and the model it trains: what a checkpoint holds."""

    def __init__(self, name: str, seed: int) -> None:
        super().__init__()
        self.balancer = create(name, num_tasks=2, **_options(name))
        self.model = _Tiny(2, scales=(1.0, 5.0), seed=seed)


@pytest.mark.parametrize("name", STATEFUL)
def test_state_dict_round_trip_resumes_identically(name):
    run = _Run(name, seed=0)
    _train(run.balancer, run.model, 7, start=0)  # mid-epoch: steps 6 of epoch 3 done

    def four_steps(run: _Run, i: int):
        return _train(run.balancer, run.model, 4, start=7 + 4 * i)

    assert_resumes_exactly(run, _Run(name, seed=99), four_steps, steps=2)
    # the weights did move during the run (otherwise the test proves nothing)
    trace, _ = _train(run.balancer, run.model, 4, start=15)
    assert not all(torch.equal(trace[0], w) for w in trace[1:])


def test_foreign_extra_state_is_refused_with_a_clear_message():
    gradnorm = create("gradnorm", num_tasks=2)
    famo_state = create("famo", num_tasks=2).state_dict()
    with pytest.raises(ValueError, match="written by another method"):
        gradnorm.load_state_dict(famo_state)
    with pytest.raises(ValueError, match="written by another method"):
        gradnorm.set_extra_state(gradnorm.get_extra_state() | {"other": 1})


@pytest.mark.parametrize("name", METHODS)
def test_double_precision_losses_work(name):
    bal = create(name, num_tasks=2, **({"warmup_epochs": 0} if name == "stch" else {}))
    assert isinstance(bal, LossWeighting)
    model = _Tiny(2).double()
    x, y = _batch(0)
    losses, feats = model(x.double(), y.double())
    info = bal.backward(losses, model.shared_parameters(), feats)
    assert info.weights.dtype == torch.float64
    assert all(p.grad is not None and p.grad.dtype == torch.float64 for p in model.parameters())
