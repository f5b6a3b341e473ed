"""The bounded-memory Gramian path (issue 23): ``J Jᵀ`` accumulated block by block of the shared
parameters, then one backward of ``Σₖ wₖLₖ``; the same update as the full path, for every Gramian
weighting, with never more than the memory budget of J held at once."""

from __future__ import annotations

import pytest
import torch

from balancing_checks import combination_mass, hard_sharing_problem, rounding_gamma
from mtlkit.balancing import GramianWeighting, available, create, method_class
from mtlkit.balancing.engine import blocks as blocks_module
from mtlkit.balancing.engine import task_jacobian
from mtlkit.balancing.engine.blocks import parameter_blocks
from mtlkit.balancing.engine.gradients import acquire

K = 3
GRAMIAN_METHODS = [
    info.name
    for info in available()
    if issubclass(method_class(info.name), GramianWeighting)
    and not method_class(info.name).on_features
]
DIRECTION_RTOL = 1.5e-6
"""The interior point's direction accuracy (as in ``test_balancing_guarantees``): the two paths
give the solvers Gramians that differ by float64 rounding, which moves an interior-point solution
by up to this much relative to the direction."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _setup():
    return hard_sharing_problem("mlp", K)


def _shared_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.shared_parameters())


def _step(name: str, path: str, with_features: bool, budget: int, steps: int = 2):
    """Two steps of a fresh ``name`` on a fresh model: the gradients and weights of each."""
    model, forward = _setup()
    options = {"weighting": "mgda"} if name == "cr-mogm" else {}
    balancer = create(name, num_tasks=K, gramian_path=path, memory_budget=budget, **options)
    out = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        z, losses = forward()
        info = balancer.backward(losses, model.shared_parameters(), z if with_features else None)
        out.append(([p.grad.clone() for p in model.parameters()], info.weights))
    return model, out


@pytest.mark.parametrize("with_features", [True, False])
@pytest.mark.parametrize("name", GRAMIAN_METHODS)
def test_the_blocks_give_the_full_paths_update(name, with_features):
    model, forward = _setup()
    shared = list(model.shared_parameters())
    budget = K * 4 * 200  # blocks of at most 200 float32 parameters: every layer its own block
    assert len(parameter_blocks(shared, K, budget)) >= 4
    z, losses = forward()
    jacobian = task_jacobian(losses, shared, z)  # the same at both steps: no optimizer step
    _, full = _step(name, "full", with_features, budget)
    _, blocked = _step(name, "blocks", with_features, budget)
    n = len(shared)
    for (grads_full, w_full), (grads_blocked, w_blocked) in zip(full, blocked):
        torch.testing.assert_close(w_blocked, w_full, rtol=1e-5, atol=1e-7)
        d_full = torch.cat([g.reshape(-1) for g in grads_full[:n]])
        d_blocked = torch.cat([g.reshape(-1) for g in grads_blocked[:n]])
        # wᵀJ summed by autograd in float32 against the engine's float64 sum: 2γ·S apart at most
        mass = combination_mass(w_full, jacobian)
        atol = 4 * rounding_gamma(jacobian) * mass + DIRECTION_RTOL * float(d_full.norm())
        torch.testing.assert_close(d_blocked, d_full, rtol=0, atol=atol, msg=name)
        for got, expected in zip(grads_blocked[n:], grads_full[n:]):  # Σₖ of the heads' own
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_no_more_than_the_budget_of_the_jacobian_is_held_at_once(monkeypatch):
    model, forward = _setup()
    budget = K * 4 * 300
    sizes = []

    def spy(*args, **kwargs):
        grads = acquire(*args, **kwargs)
        sizes.append(grads.jacobian.numel() * grads.jacobian.element_size())
        return grads

    monkeypatch.setattr(blocks_module, "acquire", spy)
    balancer = create("upgrad", num_tasks=K, gramian_path="blocks", memory_budget=budget)
    z, losses = forward()
    balancer.backward(losses, model.shared_parameters(), z)
    largest = max(K * p.numel() * 4 for p in model.shared_parameters())
    assert len(sizes) >= 2 and max(sizes) <= max(budget, largest)
    assert sum(sizes) == K * _shared_bytes(model)  # every shared parameter in exactly one block


@pytest.mark.parametrize(("factor", "blocked"), [(1.0, False), (0.5, True)])
def test_auto_takes_the_blocks_when_the_jacobian_exceeds_the_budget(monkeypatch, factor, blocked):
    model, forward = _setup()
    calls = []
    monkeypatch.setattr(
        blocks_module, "acquire", lambda *args, **kw: calls.append(1) or acquire(*args, **kw)
    )
    budget = int(factor * K * _shared_bytes(model))
    balancer = create("mgda", num_tasks=K, memory_budget=budget)
    z, losses = forward()
    balancer.backward(losses, model.shared_parameters(), z)
    assert bool(calls) == blocked


def test_parameter_blocks_keep_the_order_and_isolate_an_oversized_parameter():
    params = [torch.zeros(n) for n in (5, 5, 50, 5, 5, 5)]
    blocks = parameter_blocks(params, 2, 2 * 4 * 12)
    assert [[p.numel() for p in block] for block in blocks] == [[5, 5], [50], [5, 5], [5]]


@pytest.mark.parametrize("with_features", [True, False])
def test_weights_every_reuses_its_weights_on_the_blocks_too(with_features):
    """Between two solves ``wᵀJ`` comes from a backward of ``Σₖ wₖLₖ`` (cut at the features or
    through the whole graph), never from a materialised J: the same update as the full path."""
    results = {}
    for path in ("full", "blocks"):
        model, forward = _setup()
        balancer = create(
            "upgrad", num_tasks=K, weights_every=2, gramian_path=path, memory_budget=K * 4 * 200
        )
        grads = []
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            z, losses = forward()
            balancer.backward(losses, model.shared_parameters(), z if with_features else None)
            grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        results[path] = grads
    for got, expected in zip(results["blocks"], results["full"]):
        # the solves' direction accuracy, plus float32 sums in another order (≈1e-7 relative)
        atol = (DIRECTION_RTOL + 1e-6) * float(expected.norm())
        torch.testing.assert_close(got, expected, rtol=0, atol=atol)


def test_the_config_sets_the_path_and_names_a_misplaced_budget():
    from mtlkit.config import ConfigError, parse_config
    from mtlkit.workflows.build import build_balancer

    raw = {"balancer": {"name": "upgrad", "memory_budget": 1 << 20, "gramian_path": "blocks"}}
    config = parse_config(raw)
    assert config.balancer.options["memory_budget"] == 1 << 20  # kept in config.yaml
    engine = build_balancer(config, 2).engine
    assert (engine.gramian_path, engine.memory_budget) == ("blocks", 1 << 20)
    with pytest.raises(ConfigError, match="memory_budget"):
        parse_config({"balancer": {"name": "ew", "memory_budget": 1 << 20}})
    with pytest.raises(ConfigError, match="gramian_path must be one of"):
        parse_config({"balancer": {"name": "mgda", "gramian_path": "half"}})
