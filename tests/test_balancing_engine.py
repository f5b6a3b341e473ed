"""The balancing engine computes exactly the per-task gradients, whatever the strategy.

Every test compares the engine with the definition: the Jacobian built row by row with K separate
``torch.autograd.grad`` calls on a real (small) network, and each head's own task gradient.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from balancing_checks import hard_sharing_problem
from mtlkit.balancing.base import GradientAggregator, GramianWeighting
from mtlkit.balancing.engine import STRATEGIES, Engine, task_gramian, task_jacobian
from mtlkit.models import HardSharing

ATOL = 1e-5
_WEIGHTS = (0.3, 0.7, 1.1)


class FixedGramian(GramianWeighting):
    """Fixed weights; remembers the Gramian it was given."""

    def __init__(self, num_tasks: int | None = None) -> None:
        super().__init__(num_tasks)
        self.seen: Tensor | None = None

    def weights_from_gramian(self, gramian: Tensor, losses: Tensor | None = None) -> Tensor:
        self.seen = gramian.clone()
        return torch.tensor(_WEIGHTS[: gramian.shape[0]], dtype=gramian.dtype)


class FixedGramianOnFeatures(FixedGramian):
    on_features = True


class RowZeroPlusMean(GradientAggregator):
    """A Jacobian aggregator that is not a weighting of the Gramian: ``J[0] + mean(J)``."""

    def __init__(self, num_tasks: int | None = None) -> None:
        super().__init__(num_tasks)
        self.seen_losses: Tensor | None = None

    def aggregate(self, jacobian: Tensor, losses: Tensor | None = None) -> Tensor:
        self.seen_losses = losses
        return jacobian[0] + jacobian.mean(dim=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _reference_update(aggregator: GradientAggregator, jacobian: Tensor) -> Tensor:
    if isinstance(aggregator, GramianWeighting):
        return torch.tensor(_WEIGHTS[: jacobian.shape[0]]) @ jacobian
    return jacobian[0] + jacobian.mean(dim=0)


def _definition(model: HardSharing, forward):
    """J by K separate autograd.grad calls, and each head's own task gradient."""
    _, losses = forward()
    shared = list(model.shared_parameters())
    rows, heads = [], []
    for k, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, shared, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
        head = list(model.task_parameters(f"t{k}"))
        heads.append(torch.autograd.grad(loss, head, retain_graph=True))
    return torch.stack(rows), heads


def _shared_grad(model: HardSharing) -> Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])


@pytest.mark.parametrize(("backbone", "num_tasks"), [("lenet", 2), ("mlp", 3)])
@pytest.mark.parametrize("method", [FixedGramian, RowZeroPlusMean])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("with_features", [True, False])
def test_backward_is_the_aggregate_of_the_explicit_jacobian(
    backbone, num_tasks, method, strategy, with_features
):
    model, forward = hard_sharing_problem(backbone, num_tasks)
    jacobian, head_grads = _definition(model, forward)
    balancer = method(num_tasks)
    balancer.engine = Engine(strategy=strategy)
    z, losses = forward()
    info = balancer.backward(losses, model.shared_parameters(), z if with_features else None)

    torch.testing.assert_close(
        _shared_grad(model), _reference_update(balancer, jacobian), rtol=0, atol=ATOL
    )
    for k in range(num_tasks):  # every head gets its own task's plain gradient
        for p, g in zip(model.task_parameters(f"t{k}"), head_grads[k]):
            torch.testing.assert_close(p.grad, g, rtol=0, atol=ATOL)
    if isinstance(balancer, GramianWeighting):
        wide = jacobian.double()  # the engine's Gramian is float64 (issue 23)
        torch.testing.assert_close(balancer.seen, wide @ wide.T, rtol=1e-4, atol=1e-7)
        assert torch.equal(info.weights, torch.tensor(_WEIGHTS[:num_tasks]))
    else:
        assert info.weights is None
        torch.testing.assert_close(balancer.seen_losses, torch.stack(losses).detach())


@pytest.mark.parametrize("method", [FixedGramian, RowZeroPlusMean])
def test_every_strategy_gives_the_same_gradients(method):
    results = []
    for strategy in STRATEGIES:
        for with_features in (True, False):
            model, forward = hard_sharing_problem("lenet", 3, seed=4)
            balancer = method(3)
            balancer.engine = Engine(strategy=strategy)
            z, losses = forward()
            balancer.backward(losses, model.shared_parameters(), z if with_features else None)
            results.append([p.grad.clone() for p in model.parameters()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=0, atol=ATOL)


@pytest.mark.parametrize(("backbone", "num_tasks"), [("lenet", 2), ("mlp", 3)])
def test_on_features_is_the_representation_level_shortcut(backbone, num_tasks):
    model, forward = hard_sharing_problem(backbone, num_tasks, seed=1)
    z, losses = forward()
    grads_z = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses])
    flat = grads_z.flatten(1)
    weights = torch.tensor(_WEIGHTS[:num_tasks])
    total = sum(w * loss for w, loss in zip(weights, losses))
    expected = torch.autograd.grad(total, list(model.parameters()))

    model.zero_grad()
    z, losses = forward()
    balancer = FixedGramianOnFeatures(num_tasks)
    info = balancer.backward(losses, model.shared_parameters(), z)
    torch.testing.assert_close(balancer.seen, flat @ flat.T, rtol=1e-5, atol=1e-8)
    assert torch.equal(info.weights, weights)
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=ATOL)


@pytest.mark.parametrize("method", [FixedGramian, RowZeroPlusMean, FixedGramianOnFeatures])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gradients_accumulate_into_existing_grad(method, strategy):
    model, forward = hard_sharing_problem("mlp", 3, seed=2)
    z, losses = forward()
    balancer = method(3)
    balancer.engine = Engine(strategy=strategy)
    balancer.backward(losses, model.shared_parameters(), z)
    once = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    z, losses = forward()
    balancer.backward(losses, model.shared_parameters(), z)
    for p, g in zip(model.parameters(), once):
        torch.testing.assert_close(p.grad, g + 0.5, rtol=0, atol=ATOL)


class _TiedHeads(nn.Module):
    """Heads that read the trunk's last weight directly: the losses reach a shared parameter
    around the features, so the graph cannot be split at them."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(3, 2), nn.Linear(3, 2)])
        self.frozen_shared = nn.Linear(5, 5)  # trunk parameter not in shared_params

    def forward(self, x: Tensor):
        z = self.trunk(self.frozen_shared(x))
        tied = self.trunk[2].weight
        losses = [
            self.heads[0](z).pow(2).mean() + tied.pow(2).sum(),
            (self.heads[1](z) @ tied[:, :2].T).sin().mean(),
        ]
        return z, losses


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("tied", [True, False])
def test_exact_when_the_graph_cannot_be_split_at_the_features(strategy, tied):
    torch.manual_seed(3)
    model = _TiedHeads()
    x = torch.randn(7, 5)
    shared = list(model.trunk.parameters())
    z, losses = model(x)
    if not tied:  # same model with the tied term replaced by something head-only
        losses = [losses[0], model.heads[1](z).sin().mean()]
    jacobian = torch.stack(
        [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)])
            for loss in losses
        ]
    )
    others = [p for p in model.parameters() if all(p is not s for s in shared)]
    expected_others = torch.autograd.grad(sum(losses), others, retain_graph=True, allow_unused=True)
    balancer = FixedGramian(2)
    balancer.engine = Engine(strategy=strategy)
    balancer.backward(losses, shared, z)
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    torch.testing.assert_close(got, _reference_update(balancer, jacobian), rtol=0, atol=ATOL)
    for p, g in zip(others, expected_others):
        # the non-shared trunk layer and the heads get the gradient of the sum of the losses
        torch.testing.assert_close(p.grad, g, rtol=0, atol=ATOL)


def test_on_features_is_exact_when_the_graph_cannot_be_split_at_the_features():
    torch.manual_seed(8)
    model = _TiedHeads()
    x = torch.randn(7, 5)
    z, losses = model(x)
    grads_z = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses])
    weights = torch.tensor(_WEIGHTS[:2])
    total = sum(w * loss for w, loss in zip(weights, losses))
    expected = torch.autograd.grad(total, list(model.parameters()), retain_graph=True)
    balancer = FixedGramianOnFeatures(2)
    balancer.backward(losses, model.trunk.parameters(), z)
    flat = grads_z.flatten(1)
    torch.testing.assert_close(balancer.seen, flat @ flat.T, rtol=1e-5, atol=1e-8)
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=ATOL)


class _TwoFeatures(nn.Module):
    """A trunk with two outputs, the second computed from the first; heads read both."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Linear(5, 6), nn.Tanh())
        self.second = nn.Sequential(nn.Linear(6, 4), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(10, 1), nn.Linear(10, 1), nn.Linear(4, 1)])

    def forward(self, x: Tensor):
        z1 = self.first(x)
        z2 = self.second(z1)
        both = torch.cat([z1, z2], dim=1)
        losses = [
            self.heads[0](both).pow(2).mean(),
            self.heads[1](both).cos().mean(),
            self.heads[2](z2).exp().mean(),
        ]
        return (z1, z2), losses


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_several_feature_tensors_split_the_graph_exactly(strategy):
    torch.manual_seed(9)
    model = _TwoFeatures()
    x = torch.randn(8, 5)
    shared = [*model.first.parameters(), *model.second.parameters()]
    features, losses = model(x)
    expected = torch.stack(
        [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)])
            for loss in losses
        ]
    )
    engine = Engine(strategy)
    torch.testing.assert_close(task_jacobian(losses, shared, features, engine=engine), expected)
    torch.testing.assert_close(
        task_jacobian(losses, shared, features[1], engine=engine), expected
    )  # a cut that is not one: z1 also reaches the heads, so the engine uses the whole graph


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_task_that_does_not_reach_the_shared_parameters_has_a_zero_row(strategy):
    model, forward = hard_sharing_problem("mlp", 2, seed=5)
    z, losses = forward()
    lonely = nn.Parameter(torch.tensor([1.5]))
    losses = [losses[0], lonely.pow(2).sum()]
    jacobian = task_jacobian(losses, model.shared_parameters(), z, engine=Engine(strategy))
    assert torch.count_nonzero(jacobian[1]) == 0 and torch.count_nonzero(jacobian[0]) > 0
    balancer = RowZeroPlusMean(2)
    balancer.engine = Engine(strategy)
    balancer.backward(losses, model.shared_parameters(), z)
    torch.testing.assert_close(lonely.grad, torch.tensor([3.0]))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_helpers_give_jacobian_and_gramian_and_keep_the_graph(strategy):
    model, forward = hard_sharing_problem("lenet", 3, seed=6)
    expected, _ = _definition(model, forward)
    engine = Engine(strategy)
    z, losses = forward()
    shared = list(model.shared_parameters())
    torch.testing.assert_close(task_jacobian(losses, shared, z, engine=engine), expected)
    torch.testing.assert_close(task_jacobian(losses, shared, engine=engine), expected)
    torch.testing.assert_close(
        task_gramian(losses, shared, z, engine=engine),
        expected @ expected.T,
        rtol=1e-4,
        atol=1e-7,
    )
    assert all(p.grad is None for p in model.parameters())
    sum(losses).backward()  # the graph is still there


def test_nothing_is_read_back_to_the_host(monkeypatch):
    model, forward = hard_sharing_problem("lenet", 3)
    z, losses = forward()

    def refuse(*args, **kwargs):
        raise AssertionError("the engine read a tensor back to the host")

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for method in (FixedGramian, RowZeroPlusMean, FixedGramianOnFeatures):
        for strategy in STRATEGIES:
            balancer = method(3)
            balancer.engine = Engine(strategy)
            z, losses = forward()
            balancer.backward(losses, model.shared_parameters(), z)


def test_the_default_strategy_is_loop_and_unknown_ones_are_refused():
    assert Engine().strategy == "loop" == STRATEGIES[0]
    assert set(STRATEGIES) == {"loop", "batched"}
    for strategy in ("auto", "fastest"):
        with pytest.raises(ValueError, match="strategy must be one of 'loop', 'batched'"):
            Engine(strategy)


def test_clear_errors():
    model, forward = hard_sharing_problem("mlp", 2)
    z, losses = forward()
    with pytest.raises(ValueError, match="shared_params is empty"):
        FixedGramian(2).backward(losses, [], z)
    with pytest.raises(ValueError, match=r"losses\[1\] must be a scalar"):
        FixedGramian(2).backward([losses[0], torch.stack(losses)], model.shared_parameters(), z)
    with pytest.raises(ValueError, match="pass features=model.encode"):
        FixedGramianOnFeatures(2).backward(losses, model.shared_parameters())
    with pytest.raises(ValueError, match="do not require grad"):
        FixedGramianOnFeatures(2).backward(losses, model.shared_parameters(), z.detach())
    with pytest.raises(ValueError, match="created for 3 tasks but got 2"):
        FixedGramian(3).backward(losses, model.shared_parameters(), z)
    for method in (FixedGramian, RowZeroPlusMean):
        with pytest.raises(ValueError, match="none of the losses requires grad"):
            method(2).backward([loss.detach() for loss in losses], model.shared_parameters())


class _CountingIdentity(torch.autograd.Function):
    """Identity whose backward counts how often the graph below it is traversed."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        _CountingIdentity.calls += 1
        return grad


def test_one_dataset_per_task_differentiates_each_task_through_its_own_batch_only():
    """With per-task features (one batch per task), task k's trunk backward starts from its own
    features: K trunk passes in all, not K² with zero cotangents for the others, and row k of
    the Jacobian is task k's gradient on its own batch."""
    gen = torch.Generator().manual_seed(0)
    trunk = torch.nn.Linear(5, 4)
    heads = [torch.nn.Linear(4, 1) for _ in range(3)]
    inputs = [torch.randn(6, 5, generator=gen) for _ in range(3)]
    features = [_CountingIdentity.apply(trunk(x)) for x in inputs]
    losses = [head(z).square().mean() for head, z in zip(heads, features)]
    expected = [
        torch.cat(
            [
                g.reshape(-1)
                for g in torch.autograd.grad(loss, list(trunk.parameters()), retain_graph=True)
            ]
        )
        for loss in losses
    ]
    _CountingIdentity.calls = 0
    jacobian = task_jacobian(losses, trunk.parameters(), features)
    assert _CountingIdentity.calls == 3
    torch.testing.assert_close(jacobian, torch.stack(expected))
