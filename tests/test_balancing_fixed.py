"""Fixed weights and the two-task trade-off λ give exactly the weighted gradient."""

import math

import pytest
import torch

from balancing_checks import reload
from mtlkit.balancing import create
from mtlkit.models import HardSharing, classification_head, create_backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model_and_losses(seed: int = 0):
    torch.manual_seed(seed)
    model = HardSharing(
        create_backbone("mlp", (1, 8, 8)),
        {"a": classification_head(128, 5), "b": classification_head(128, 5)},
    )
    x = torch.randn(16, 1, 8, 8)
    y = torch.randint(0, 5, (16,))
    z = model.encode(x)
    out = model.decode(z)
    losses = [torch.nn.functional.cross_entropy(out[t], y) for t in ("a", "b")]
    return model, losses, z


def _grads(model, loss):
    return torch.autograd.grad(loss, list(model.parameters()), retain_graph=True, allow_unused=True)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_lambda_gives_exact_convex_combination_of_task_gradients(lam):
    model, losses, z = _model_and_losses()
    g1 = _grads(model, losses[0])
    g2 = _grads(model, losses[1])
    info = create("fixed", num_tasks=2, lam=lam).backward(losses, model.shared_parameters(), z)
    assert torch.equal(info.weights, torch.tensor([lam, 1 - lam]))
    for p, a, b in zip(model.trunk.parameters(), g1, g2):
        torch.testing.assert_close(p.grad, lam * a + (1 - lam) * b, rtol=0, atol=1e-7)
    # each head only sees its own task, scaled by that task's weight
    for p, a in zip(model.heads["a"].parameters(), g1[len(list(model.trunk.parameters())) :]):
        torch.testing.assert_close(p.grad, lam * a, rtol=0, atol=1e-7)


def test_equal_weighting_is_the_plain_sum():
    model, losses, z = _model_and_losses(1)
    expected = _grads(model, losses[0] + losses[1])
    create("ew").backward(losses, model.shared_parameters(), z)
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of"),
        ({"lam": 0.5, "weights": [1, 1]}, "exactly one of"),
        ({"lam": 1.5}, r"lam must be a number in \[0.0, 1.0\], got 1.5"),
        ({"lam": -0.1}, "lam must be a number in"),
        ({"lam": True}, "lam must be a number in .*got True"),
        ({"lam": math.nan}, "lam must be a number in .*got nan"),
        ({"lam": "0.5"}, "lam must be a number in"),
        ({"weights": [-1.0, 2.0]}, r"weights\[0\] must be a number in \[0.0, inf\]"),
        ({"weights": [math.nan, 1.0]}, r"weights\[0\] must be a number .*got nan"),
        ({"weights": [1.0, math.inf]}, r"weights\[1\] must be a number .*got inf"),
        ({"weights": [1.0, True]}, r"weights\[1\] must be a number .*got True"),
        ({"weights": [0.0, 0.0]}, "not all 0"),
        ({"weights": 0.5}, "weights must be a sequence of numbers"),
        ({"weights": [1.0, 2.0, 3.0]}, "3 entries but there are 2"),
        ({"lamb": 0.5}, "no option 'lamb'"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(options, message):
    with pytest.raises(ValueError, match=message):
        create("fixed", num_tasks=2, **options)


def test_non_scalar_loss_is_refused():
    model, losses, z = _model_and_losses()
    with pytest.raises(ValueError, match=r"losses\[1\] must be a scalar"):
        create("ew").backward([losses[0], torch.ones(3)], model.shared_parameters(), z)


def test_weights_travel_in_the_state_dict():
    fresh = reload(create("fixed", weights=[0.2, 0.8]), create("fixed", weights=[0.5, 0.5]))
    assert torch.equal(fresh.weights, torch.tensor([0.2, 0.8]))
