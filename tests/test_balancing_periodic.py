"""``create(name, weights_every=n)``: a Gramian weighting solved every n steps, its weights reused
in between by one trunk backward (:class:`~mtlkit.balancing.periodic.PeriodicWeights`).

Between two solves the update must be exactly ``wᵀJ`` with the last solve's weights (J measured
separately on the same graph), up to the rounding of the two ways of summing it:
``2γ·Σⱼ|wⱼ|‖gⱼ‖`` with ``γ = (P + K)·u`` (:mod:`balancing_checks`); the heads get their own
task's gradient; and the trunk is differentiated once, not K times.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from balancing_checks import assert_resumes_exactly, combination_mass, rounding_gamma
from mtlkit.balancing import create
from mtlkit.balancing.engine import task_jacobian
from mtlkit.balancing.engine.accumulate import wide_gramian
from mtlkit.models import HardSharing, classification_head, create_backbone

K = 4
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model() -> HardSharing:
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (1, 5, 5), hidden=[12, 12])
    return HardSharing(trunk, {f"t{k}": classification_head(12, 3) for k in range(K)})


def _losses(model: HardSharing, step: int) -> tuple[list[Tensor], Tensor]:
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(10, 1, 5, 5, generator=gen)
    features = model.encode(x)
    outputs = model.decode(features)
    losses = [
        nn.functional.cross_entropy(outputs[f"t{k}"], torch.randint(0, 3, (10,), generator=gen))
        for k in range(K)
    ]
    return losses, features


class _TrunkBackwards:
    """Counts the gradients computed for the trunk's first weight (one per trunk backward)."""

    def __init__(self, model: HardSharing) -> None:
        self.count = 0
        model.trunk[1].weight.register_hook(self._add)

    def _add(self, grad: Tensor) -> None:
        self.count += 1


@pytest.mark.parametrize("with_features", [True, False])
def test_between_solves_the_update_is_the_last_weights_times_the_jacobian(with_features):
    model = _model()
    plain = create("upgrad", num_tasks=K)
    periodic = create("upgrad", num_tasks=K, weights_every=3)
    counter = _TrunkBackwards(model)
    shared = list(model.shared_parameters())
    last = None
    for step in range(5):
        losses, features = _losses(model, step)
        jacobian = task_jacobian(losses, shared, features)
        heads = [
            torch.autograd.grad(loss, list(model.heads[f"t{k}"].parameters()), retain_graph=True)
            for k, loss in enumerate(losses)
        ]
        model.zero_grad(set_to_none=True)
        counter.count = 0
        info = periodic.backward(losses, shared, features if with_features else None)
        direction = torch.cat([p.grad.reshape(-1) for p in shared])
        if step % 3 == 0:  # a solve: the method's own weights
            expected = plain.weights_from_gramian(wide_gramian(jacobian)).float()
            torch.testing.assert_close(info.weights, expected, rtol=0, atol=0)
            last = info.weights
        else:
            torch.testing.assert_close(info.weights, last, rtol=0, atol=0)
            if with_features:
                assert counter.count == 1, "the trunk was differentiated more than once"
        atol = 2 * rounding_gamma(jacobian) * combination_mass(info.weights, jacobian)
        torch.testing.assert_close(direction, info.weights @ jacobian, rtol=0, atol=atol)
        for k, grads in enumerate(heads):
            for p, g in zip(model.heads[f"t{k}"].parameters(), grads):
                torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-7)


def test_a_resumed_run_solves_at_the_same_steps_with_the_same_weights():
    model = _model()

    def step(balancer, i):
        model.zero_grad(set_to_none=True)
        losses, features = _losses(model, 10 + i)
        info = balancer.backward(losses, model.shared_parameters(), features)
        return info.weights, [p.grad.clone() for p in model.parameters()]

    original = create("mgda", num_tasks=K, weights_every=3)
    step(original, 0)
    step(original, 1)  # the next solve is two steps ahead
    assert_resumes_exactly(original, create("mgda", num_tasks=K, weights_every=3), step, steps=3)


def test_weights_every_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="weights_every applies to the Gramian weightings"):
        create("ew", weights_every=2)
    with pytest.raises(ValueError, match="already works on the shared representation"):
        create("mgda-ub", weights_every=2)
    with pytest.raises(ValueError, match="weights_every must be an integer >= 1"):
        create("upgrad", weights_every=0)
    assert type(create("upgrad", weights_every=1)).__name__ == "UPGrad"
