"""Sharing architectures: shapes on every trunk, who owns which parameter, cross-stitch at
identity, DSelect-k's selection, and training through the loop with every kind of method."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtlkit.balancing import create
from mtlkit.data import MultiInputBatches, Split, TensorBatches, load_benchmark
from mtlkit.models import (
    ARCHITECTURES,
    CrossStitch,
    DSelectGate,
    architecture_options,
    classification_head,
    create_backbone,
    create_model,
    smooth_step,
)
from mtlkit.tasks import ClassificationTask, RegressionTask
from mtlkit.training import Trainer, create_optimizer
from test_training import epoch_batches, learnable_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRUNKS = {
    "cnn": {},
    "lenet": {},
    "mlp": {"hidden": (16, 16)},
    "resnet": {"width": 4, "blocks": (1, 1)},
}
SOFT = [name for name in ARCHITECTURES if name != "hard"]


def _model(name: str, trunk: str = "mlp", tasks=(("a", 10), ("b", 3)), shape=(1, 28, 28), **o):
    torch.manual_seed(0)
    body = create_backbone(trunk, shape, **TRUNKS[trunk])
    heads = {t: classification_head(body.out_features, n) for t, n in tasks}
    return create_model(name, body, heads, shape, **o)


@pytest.mark.parametrize("trunk", sorted(TRUNKS))
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_runs_on_every_trunk(name, trunk):
    model = _model(name, trunk)
    features = model.encode(torch.rand(3, 1, 28, 28))
    outputs = model.decode(features)
    assert {t: tuple(o.shape) for t, o in outputs.items()} == {"a": (3, 10), "b": (3, 3)}
    per_task = features.values() if isinstance(features, dict) else [features]
    assert all(f.shape[-1] == model.heads["a"].in_features for f in per_task)
    assert isinstance(features, torch.Tensor) == model.shared_representation


def _reached(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[bool]:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [g is not None for g in grads]


@pytest.mark.parametrize(
    ("name", "options"),
    [(name, {}) for name in ARCHITECTURES]
    + [("ple", {"levels": 3}), ("mmoe", {"expert": "trunk"})],
)
def test_a_tasks_loss_reaches_every_shared_parameter_and_no_other_tasks_own(name, options):
    tasks = (("a", 4), ("b", 3), ("c", 2))
    model = _model(name, tasks=tasks, shape=(1, 6, 6), **options)
    shared = list(model.shared_parameters())
    owned = {t: list(model.task_parameters(t)) for t, _ in tasks}
    ids = [{id(p) for p in group} for group in [shared, *owned.values()]]
    assert sum(map(len, ids)) == len({id(p) for p in model.parameters()})  # a partition
    outputs = model(torch.rand(5, 1, 6, 6))
    for task, _ in tasks:
        loss = outputs[task].square().mean()
        assert all(_reached(loss, shared)), f"{task} misses a shared parameter"
        assert all(_reached(loss, owned[task]))
        for other in owned:
            if other != task:
                assert not any(_reached(loss, owned[other])), f"{task} reaches {other}'s own"


def test_multi_input_gives_each_task_the_features_of_its_own_inputs():
    model = _model("ple", shape=(1, 6, 6)).eval()
    xa, xb = torch.rand(4, 1, 6, 6), torch.rand(2, 1, 6, 6)
    features = model.encode({"a": xa, "b": xb})
    torch.testing.assert_close(features["a"], model.encode(xa)["a"], rtol=0, atol=0)
    torch.testing.assert_close(features["b"], model.encode(xb)["b"], rtol=0, atol=0)


@pytest.mark.parametrize("trunk", ["cnn", "mlp", "resnet"])
def test_cross_stitch_at_identity_mixing_is_k_independent_networks(trunk):
    model = _model("cross-stitch", trunk, tasks=(("a", 4), ("b", 3), ("c", 2))).eval()
    assert isinstance(model, CrossStitch)
    with torch.no_grad():
        for stitch in model.stitches:
            stitch.copy_(torch.eye(3))
    x = torch.rand(2, 1, 28, 28)
    outputs = model(x)
    for column, task in zip(model.columns, model.task_names):
        alone = model.heads[task](column(x))
        torch.testing.assert_close(outputs[task], alone, rtol=0, atol=0)  # 1·h + 0·h' is exact


def test_cross_stitch_starts_near_identity_and_mixes():
    model = _model("cross-stitch", tasks=(("a", 4), ("b", 3), ("c", 2)), self_weight=0.8)
    for stitch in model.stitches:
        torch.testing.assert_close(stitch.sum(1), torch.ones(3))
        assert torch.allclose(stitch.diagonal(), torch.full((3,), 0.8))


def test_smooth_step_is_the_papers_cubic():
    gamma = 2.0
    t = torch.linspace(-2, 2, 401, dtype=torch.float64)
    s = smooth_step(t, gamma)
    inside = t.abs() < gamma / 2
    cubic = -2 / gamma**3 * t**3 + 3 / (2 * gamma) * t + 0.5
    torch.testing.assert_close(s[inside], cubic[inside])
    assert (s[t <= -1] == 0).all() and (s[t >= 1] == 1).all()
    edge = torch.tensor([-1.0, 1.0], dtype=torch.float64)  # continuous, flat at the edges
    torch.testing.assert_close(
        smooth_step(edge, gamma), torch.tensor([0.0, 1.0], dtype=torch.float64)
    )


@pytest.mark.parametrize(("experts", "k"), [(4, 2), (8, 3), (8, 1)])
def test_dselect_k_selects_exactly_k_experts_once_its_gates_converge(experts, k):
    """Saturated smooth-steps (|z| ≥ γ/2): each selector is one-hot, so the gate weighs exactly
    k experts when the selectors' codes differ (at most k in general), and sums to one."""
    gate = DSelectGate(5, experts, k, gamma=1.0)
    bits = experts.bit_length() - 1
    chosen = torch.randperm(experts, generator=torch.Generator().manual_seed(experts + k))[:k]
    codes = ((chosen[:, None] >> torch.arange(bits)) & 1).float()  # selector l picks chosen[l]
    with torch.no_grad():
        gate.codes.weight.zero_()
        gate.codes.bias.copy_((codes * 2 - 1).flatten() * 3.0)  # ±3 ≥ γ/2: saturated
    weights = gate(torch.randn(7, 5))
    torch.testing.assert_close(weights.sum(1), torch.ones(7))
    assert ((weights > 0).sum(1) == k).all()
    assert set((weights[0] > 0).nonzero().flatten().tolist()) == set(chosen.tolist())


def test_dselect_k_gates_sum_to_one_before_convergence():
    gate = DSelectGate(5, 8, 3, gamma=10.0)  # wide transition: nothing saturates
    weights = gate(torch.randn(6, 5))
    torch.testing.assert_close(weights.sum(1), torch.ones(6))
    assert (weights > 0).all()


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("dselect-k", {"experts": 6}, "experts must be a power of two"),
        ("dselect-k", {"k": 5}, r"k must be in 1..experts \(4\)"),
        ("mmoe", {"expert": "tree"}, "expert must be one of: mlp, trunk"),
        ("mmoe", {"k": 2}, "sharing 'mmoe' takes no option 'k'"),
        ("cross-stitch", {"self_weight": 0.0}, r"self_weight must be in \(0, 1\]"),
        ("ple", {"levels": 0}, "levels must be an integer ≥ 1"),
    ],
)
def test_bad_options_are_refused_naming_the_option(name, options, message):
    with pytest.raises(ValueError, match=message):
        architecture_options(name, options)


def test_stages_beyond_the_trunk_and_trunks_without_stages_are_refused():
    with pytest.raises(ValueError, match=r"stages: .* in 0..2 \(the trunk has 3 stages\)"):
        _model("mtan", "cnn", stages=[3])
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 8))
    plain.out_features = 8
    heads = {"a": classification_head(8, 2)}
    with pytest.raises(ValueError, match="has no stages\\(\\) method"):
        create_model("cross-stitch", plain, heads, (1, 6, 6))
    assert create_model("mmoe", plain, heads, (1, 6, 6))({"a": torch.rand(2, 1, 6, 6)})


def _trainer(name: str, method: str, **options) -> Trainer:
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (1, 8, 8))
    tasks = [ClassificationTask("quadrant", 4), ClassificationTask("level", 3)]
    heads = {t.name: classification_head(trunk.out_features, t.num_classes) for t in tasks}
    model = create_model(name, trunk, heads, (1, 8, 8), **options)
    balancer = create(method, num_tasks=2)
    optimizer = create_optimizer("sgd", model.parameters(), balancer.parameters(), lr=0.1)
    return Trainer(model, tasks, balancer, optimizer, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ew", "upgrad", "mgda-ub"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_trains_above_chance_or_refuses_clearly(name, method):
    if method == "mgda-ub" and not ARCHITECTURES.get(name).shared_representation:
        with pytest.raises(ValueError, match="works on one shared representation"):
            _trainer(name, method)
        return
    trainer = _trainer(name, method)
    trainer.fit(epoch_batches(learnable_split(512, 0)), epochs=6)
    reports = trainer.evaluate(TensorBatches(learnable_split(TEST_SIZE, 1), 128))
    above = [reports[t].accuracy > _above_chance(n) for t, n in (("quadrant", 4), ("level", 3))]
    # MGDA stops at a Pareto-stationary point, which may leave a task at chance (here all the
    # weight goes to the task solved first, whose gradient is the min-norm one)
    assert any(above) if method == "mgda-ub" else all(above), reports


TEST_SIZE = 256


def _above_chance(classes: int) -> float:
    """Chance accuracy plus 4 standard errors of a guesser's accuracy on TEST_SIZE samples."""
    p = 1 / classes
    return p + 4 * (p * (1 - p) / TEST_SIZE) ** 0.5


def _table(n: int, seed: int) -> Split:
    """Rows of 6 features: task ``value`` (regression) = a fixed linear map, task ``sign``
    (2 classes) = whether the first feature is positive."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    value = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5, -1.0])
    return Split(x, {"value": value, "sign": (x[:, 0] > 0).long()})


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ew", "upgrad"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_learns_a_table(name, method):
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (6,), hidden=(32, 32))
    tasks = [RegressionTask("value", target_std=2.9), ClassificationTask("sign", 2)]
    heads = {t.name: classification_head(trunk.out_features, t.output_size) for t in tasks}
    model = create_model(name, trunk, heads, (6,))
    balancer = create(method, num_tasks=2)
    optimizer = create_optimizer("adam", model.parameters(), balancer.parameters(), lr=0.01)
    trainer = Trainer(model, tasks, balancer, optimizer, progress=False)
    trainer.fit(epoch_batches(_table(512, 0)), epochs=5)
    reports = trainer.evaluate(TensorBatches(_table(TEST_SIZE, 1), 128))
    assert reports["value"].r2 > 0.5 and reports["sign"].accuracy > _above_chance(2), reports


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ew", "upgrad"])
@pytest.mark.parametrize("name", SOFT)
def test_every_architecture_trains_on_one_dataset_per_task(fake_base_data, name, method):
    """Each task's batch goes through the network for that task; the per-task gradients of the
    shared parameters come from the task's own batch (random fake images: no accuracy here)."""
    data = load_benchmark("mnist+fashion", limit=16, **fake_base_data.kwargs)
    torch.manual_seed(0)
    trunk = create_backbone("lenet", data.input_shape)
    tasks = [ClassificationTask(spec.name, spec.num_classes) for spec in data.tasks]
    heads = {t.name: classification_head(trunk.out_features, t.num_classes) for t in tasks}
    model = create_model(name, trunk, heads, data.input_shape)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    balancer = create(method, num_tasks=2)
    optimizer = create_optimizer("sgd", model.parameters(), balancer.parameters(), lr=0.01)
    trainer = Trainer(model, tasks, balancer, optimizer, progress=False)
    record = trainer.fit(lambda epoch: MultiInputBatches(data.train, 8, seed=0), 1).history[0]
    assert all(math.isfinite(v) and v > 0 for v in record.train_loss.values())
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    for task in model.task_names:
        own = {id(p) for p in model.task_parameters(task)}
        assert any(id(p) in own for n, p in model.named_parameters() if n in moved), task


def test_trunk_copies_start_apart_and_the_given_trunk_is_used():
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (6,), hidden=(8,))
    heads = {"a": classification_head(8, 2), "b": classification_head(8, 2)}
    model = create_model("mmoe", trunk, heads, (6,), expert="trunk", experts=3)
    experts = list(model.shared_experts[0])
    assert experts[0] is trunk
    first = [p.flatten() for p in (e[1].weight for e in experts)]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])


@pytest.mark.parametrize("batch_norm", [False, True])
def test_the_seed_cnn_pools_before_rectifying_with_the_same_values_and_gradients(batch_norm):
    """Pooling before the ReLU (a quarter of the values to rectify) is the same function with
    the same gradients as the usual ReLU-then-pool, bit for bit: ReLU is monotone, so both
    orders take the same maximum and route its gradient to the same element."""
    torch.manual_seed(0)
    trunk = create_backbone("cnn", (1, 12, 12), batch_norm=batch_norm)
    layers = list(trunk)
    usual = list(layers)
    for pool, relu in [(i, i + 1) for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]:
        assert isinstance(layers[relu], nn.ReLU)
        usual[pool], usual[relu] = layers[relu], layers[pool]
    reference = nn.Sequential(*usual)  # the same modules: the same weights and statistics
    images = torch.randn(16, 1, 12, 12)
    grads = []
    for network in (trunk, reference):
        network.zero_grad()
        out = network(images)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        grads.append([p.grad.clone() for p in network.parameters()])
    torch.testing.assert_close(trunk(images), reference(images), rtol=0, atol=0)
    for ours, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
