"""The contract every registered balancing method keeps (parametrised over ``available()``).

A method added to ``mtlkit.balancing.methods`` is covered here automatically: it is created with
its defaults, balances a small hard-sharing network, resumes exactly from its ``state_dict``,
names an unknown option, and — for a gradient aggregator — leaves a common gradient's direction
alone.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from mtlkit.balancing import Balancer, GradientAggregator, available, create, method_class
from mtlkit.models import HardSharing, classification_head, create_backbone

K = 3
METHODS = [info.name for info in available()]
REQUIRED_OPTIONS: dict[str, dict] = {"fixed": {"weights": [1.0, 2.0, 0.5]}}
"""Options a method has no default for."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _create(name: str) -> Balancer:
    return create(name, num_tasks=K, **REQUIRED_OPTIONS.get(name, {}))


def _model(seed: int = 0) -> HardSharing:
    torch.manual_seed(seed)
    trunk = create_backbone("mlp", (1, 6, 6))
    heads = {f"t{k}": classification_head(trunk.out_features, 4) for k in range(K)}
    return HardSharing(trunk, heads)


def _batch(step: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(12, 1, 6, 6, generator=gen)
    ys = [torch.randint(0, 4, (12,), generator=gen) for _ in range(K)]
    return x, ys


def _step(model: HardSharing, balancer: Balancer, step: int, optimizer=None):
    """One training step like the trainer's; returns the BalanceInfo."""
    x, ys = _batch(step)
    model.zero_grad(set_to_none=True)
    balancer.zero_grad(set_to_none=True)
    z = model.encode(x)
    out = model.decode(z)
    losses = [F.cross_entropy(out[f"t{k}"], y) for k, y in enumerate(ys)]
    info = balancer.backward(losses, model.shared_parameters(), z)
    if optimizer is not None:
        optimizer.step()
    return info


@pytest.mark.parametrize("name", METHODS)
def test_balances_a_network_with_finite_gradients_everywhere(name):
    model = _model()
    balancer = _create(name)
    for step in range(2):
        info = _step(model, balancer, step)
        for pname, p in model.named_parameters():
            assert p.grad is not None, f"{name} left {pname} without a gradient"
            assert torch.isfinite(p.grad).all(), f"{name} gave {pname} a non-finite gradient"
        if info.weights is not None:
            assert info.weights.shape == (K,)
            assert torch.isfinite(info.weights).all()
            assert not info.weights.requires_grad
        for key, value in info.extras.items():
            assert isinstance(key, str) and isinstance(value, float)


@pytest.mark.parametrize("name", METHODS)
def test_resumes_exactly_from_its_state_dict(name):
    model = _model(1)
    balancer = _create(name)
    params = list(model.parameters()) + list(balancer.parameters())
    optimizer = torch.optim.SGD(params, lr=0.05)
    for step in range(3):  # epoch boundaries in between, for the per-epoch methods
        _step(model, balancer, step, optimizer)
        balancer.epoch_end()
    buffer = io.BytesIO()
    torch.save(balancer.state_dict(), buffer)
    buffer.seek(0)
    resumed = _create(name)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))

    twin = _model(1)
    twin.load_state_dict(model.state_dict())
    grads = []
    for bal, net in ((balancer, model), (resumed, twin)):
        torch.manual_seed(123)  # the global RNG is the trainer's to checkpoint, not the method's
        info = _step(net, bal, 3)
        grads.append(([p.grad.clone() for p in net.parameters()], info.weights))
    (first, w_first), (second, w_second) = grads
    for a, b in zip(first, second):
        assert torch.equal(a, b), f"{name} did not resume exactly from its state_dict"
    assert (w_first is None) == (w_second is None)
    if w_first is not None:
        assert torch.equal(w_first, w_second)


@pytest.mark.parametrize("name", METHODS)
def test_an_unknown_option_is_named(name):
    with pytest.raises(ValueError, match="no_such_option"):
        create(name, num_tasks=K, no_such_option=1, **REQUIRED_OPTIONS.get(name, {}))


AGGREGATORS = [n for n in METHODS if issubclass(method_class(n), GradientAggregator)]


@pytest.mark.parametrize("name", AGGREGATORS)
def test_identical_task_gradients_keep_their_direction(name):
    cls = method_class(name)
    if not getattr(cls, "keeps_common_direction", True):
        pytest.skip(f"{name} declares keeps_common_direction = False (see its docstring)")
    gen = torch.Generator().manual_seed(7)
    g = torch.randn(50, generator=gen)
    jacobian = g.repeat(K, 1)
    losses = torch.tensor([0.9, 1.3, 0.4])
    balancer = _create(name)
    for _ in range(2):  # a second call sees any state the first one left
        result = balancer.aggregate(jacobian, losses)
        assert result.shape == g.shape and torch.isfinite(result).all()
        coefficient = result @ g / (g @ g)
        assert coefficient >= -1e-6, f"{name} reversed a gradient all tasks agree on"
        torch.testing.assert_close(result, coefficient * g, rtol=0, atol=1e-4 * g.norm())
