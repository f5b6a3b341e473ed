"""The layer-wise Gramian path (issue 23): ``J Jᵀ`` from each layer's input activations and the
per-task gradients of its output, then one backward of ``Σₖ wₖLₖ``; the same update as the full
path for every Gramian weighting, on convolutional, batch-normalised, residual trunks and a trunk
with a module the path does not know, without ever holding a layer's K weight gradients where
its output gradients are smaller."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from balancing_checks import combination_mass, hard_sharing_problem, rounding_gamma
from mtlkit.balancing import GramianWeighting, available, create, method_class
from mtlkit.balancing.engine import layers as layers_module
from mtlkit.balancing.engine import task_jacobian
from mtlkit.balancing.engine.accumulate import wide_gramian
from mtlkit.balancing.engine.layers import layered_gramian

K = 3
GRAMIAN_METHODS = [
    info.name
    for info in available()
    if issubclass(method_class(info.name), GramianWeighting)
    and not method_class(info.name).on_features
]
DIRECTION_RTOL = 1.5e-6
"""The interior point's direction accuracy (as in ``test_balancing_guarantees``): the two paths
give the solvers Gramians that differ by rounding, which moves an interior-point solution by up
to this much relative to the direction."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Scale(nn.Module):
    """A module the layer-wise path does not know: an element-wise learnt scale."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class UnknownModuleTrunk(nn.Sequential):
    """Flatten, a linear layer, the unknown :class:`Scale`, ReLU, a linear layer (8×8 inputs)."""

    out_features = 10

    def __init__(self) -> None:
        super().__init__(
            nn.Flatten(), nn.Linear(64, 12), Scale(12), nn.ReLU(), nn.Linear(12, self.out_features)
        )


TRUNKS = {
    "cnn": ("cnn", {}),
    "mlp-bn": ("mlp", {"hidden": [16, 16], "batch_norm": True}),
    "resnet": ("resnet", {"width": 8, "blocks": [1, 1]}),
    "unknown-module": (UnknownModuleTrunk, {}),
}
"""Trunk name → (backbone, options) of :func:`hard_sharing_problem`."""


def _problem(trunk: str):
    backbone, options = TRUNKS[trunk]
    return hard_sharing_problem(backbone, K, **options)


def _steps(trunk: str, name: str, path: str, with_features: bool, steps: int = 2):
    """``steps`` steps of a fresh ``name`` on a fresh model: the gradients and weights of each
    (no optimizer step: every step sees the same Jacobian)."""
    model, forward = _problem(trunk)
    options = {"weighting": "mgda"} if name == "cr-mogm" else {}
    balancer = create(name, num_tasks=K, gramian_path=path, **options)
    out = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        z, losses = forward()
        info = balancer.backward(losses, model.shared_parameters(), z if with_features else None)
        out.append(([p.grad.clone() for p in model.parameters()], info.weights))
    return model, out


def _full_jacobian(trunk: str) -> torch.Tensor:
    model, forward = _problem(trunk)
    z, losses = forward()
    return task_jacobian(losses, list(model.shared_parameters()), z)


@pytest.mark.parametrize("trunk", list(TRUNKS))
@pytest.mark.parametrize("with_features", [True, False])
def test_the_layers_give_the_full_jacobians_gramian(trunk, with_features):
    """G from the layers equals ``J Jᵀ`` of the materialised J: both are sums of the same float32
    products, rounded differently (J's entries by autograd in float32, G's sums in float64), so
    they differ by at most 2γ·‖gᵢ‖‖gⱼ‖ entry by entry (γ of a dot product of J's length)."""
    jacobian = _full_jacobian(trunk)
    model, forward = _problem(trunk)
    z, losses = forward()
    got = layered_gramian(losses, list(model.shared_parameters()), z if with_features else None)
    expected = wide_gramian(jacobian)
    norms = jacobian.double().norm(dim=1)
    bound = 2 * rounding_gamma(jacobian) * torch.outer(norms, norms)
    assert bool(((got - expected).abs() <= bound).all()), (got - expected).abs().max()


AMPLIFYING = {"sdmgrad"}
"""Methods whose weights amplify a perturbation of G beyond any useful bound: SDMGrad's 20 inner
momentum steps at lr 10 on G/s² are Lipschitz in G with a constant near (1 + lr·(1 + m)·K)ⁿ, so
the rounding difference between the two paths' Gramians (checked above) can move its weights
freely; its update is checked with the full path's Gramian handed to the layers path."""


@pytest.mark.parametrize("trunk", list(TRUNKS))
@pytest.mark.parametrize("name", GRAMIAN_METHODS)
def test_the_layers_give_the_full_paths_update(name, trunk, monkeypatch):
    if name in AMPLIFYING:
        gramian = wide_gramian(_full_jacobian(trunk))
        monkeypatch.setattr(layers_module, "layered_gramian", lambda *args: gramian.clone())
    _check_same_update(name, trunk, with_features=True)


@pytest.mark.parametrize("trunk", list(TRUNKS))
def test_the_layers_give_the_full_paths_update_without_features(trunk):
    """Without ``features`` the per-task passes start from the losses themselves."""
    _check_same_update("upgrad", trunk, with_features=False)


def _check_same_update(name: str, trunk: str, with_features: bool) -> None:
    """The layers path's weights and gradients equal the full path's, at two steps."""
    jacobian = _full_jacobian(trunk)
    model, full = _steps(trunk, name, "full", with_features)
    _, layered = _steps(trunk, name, "layers", with_features)
    n = len(list(model.shared_parameters()))
    for (grads_full, w_full), (grads_layered, w_layered) in zip(full, layered):
        torch.testing.assert_close(w_layered, w_full, rtol=1e-5, atol=1e-7)
        d_full = torch.cat([g.reshape(-1) for g in grads_full[:n]])
        d_layered = torch.cat([g.reshape(-1) for g in grads_layered[:n]])
        # wᵀJ summed by autograd in float32 against the engine's float64 sum: 2γ·S apart at most
        mass = combination_mass(w_full, jacobian)
        atol = 4 * rounding_gamma(jacobian) * mass + DIRECTION_RTOL * float(d_full.norm())
        torch.testing.assert_close(d_layered, d_full, rtol=0, atol=atol, msg=name)
        for got, expected in zip(grads_layered[n:], grads_full[n:]):  # Σₖ of the heads' own
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_each_layer_keeps_the_smaller_of_its_weight_and_output_gradients(monkeypatch):
    """No layer's K weight gradients are held where its K output gradients are smaller, and
    the other way round."""
    kept = []
    contract = layers_module._LayerState.contract

    def spy(state, gramian, replicas):
        kept.append((state.weight.numel(), state.keeps_rows, state.stored.shape))
        contract(state, gramian, replicas)

    monkeypatch.setattr(layers_module._LayerState, "contract", spy)
    model, forward = _problem("cnn")
    z, losses = forward()
    layered_gramian(losses, list(model.shared_parameters()), z)
    for weight_size, keeps_rows, shape in kept:
        assert shape[0] == K
        per_task = shape[1:].numel()
        assert per_task == weight_size if keeps_rows else per_task <= weight_size
    # 8×8 inputs, batch 6: 288 weights against 6·32·8·8 output gradients; 18 432 against
    # 6·64·4·4; 65 536 against 6·256
    assert [keeps_rows for _, keeps_rows, _ in kept] == [True, False, False]


@pytest.mark.parametrize(("factor", "layered"), [(1.0, False), (0.5, True)])
def test_auto_takes_the_layers_when_the_jacobian_exceeds_the_budget(monkeypatch, factor, layered):
    model, forward = _problem("mlp-bn")
    calls = []
    monkeypatch.setattr(
        layers_module,
        "layered_gramian",
        lambda *args: calls.append(1) or layered_gramian(*args),
    )
    size = K * sum(p.numel() * p.element_size() for p in model.shared_parameters())
    balancer = create("mgda", num_tasks=K, memory_budget=int(factor * size))
    z, losses = forward()
    balancer.backward(losses, model.shared_parameters(), z)
    assert bool(calls) == layered


@pytest.mark.parametrize("with_features", [True, False])
def test_weights_every_reuses_its_weights_on_the_layers_too(with_features):
    """Between two solves ``wᵀJ`` comes from a backward of ``Σₖ wₖLₖ`` (cut at the features or
    through the whole graph), never from a materialised J: the same update as the full path."""
    results = {}
    for path in ("full", "layers"):
        model, forward = _problem("mlp-bn")
        balancer = create("upgrad", num_tasks=K, weights_every=2, gramian_path=path)
        grads = []
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            z, losses = forward()
            balancer.backward(losses, model.shared_parameters(), z if with_features else None)
            grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        results[path] = grads
    for got, expected in zip(results["layers"], results["full"]):
        # the solves' direction accuracy, plus float32 sums in another order (≈1e-7 relative)
        atol = (DIRECTION_RTOL + 1e-6) * float(expected.norm())
        torch.testing.assert_close(got, expected, rtol=0, atol=atol)


def test_the_config_sets_the_path_and_names_a_misplaced_budget():
    from mtlkit.config import ConfigError, parse_config
    from mtlkit.workflows.build import build_balancer

    raw = {"balancer": {"name": "upgrad", "memory_budget": 1 << 20, "gramian_path": "layers"}}
    config = parse_config(raw)
    assert config.balancer.options["memory_budget"] == 1 << 20  # kept in config.yaml
    engine = build_balancer(config, 2).engine
    assert (engine.gramian_path, engine.memory_budget) == ("layers", 1 << 20)
    with pytest.raises(ConfigError, match="memory_budget"):
        parse_config({"balancer": {"name": "ew", "memory_budget": 1 << 20}})
    with pytest.raises(ConfigError, match="gramian_path must be one of"):
        parse_config({"balancer": {"name": "mgda", "gramian_path": "blocks"}})
