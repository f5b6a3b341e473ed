"""Preference-conditioned networks (COSMOS, Pareto HyperNetworks, PaMaL), the preference drawn
for every training batch, their config keys, and EPO on a preference ray."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.func import functional_call

from mtlkit.balancing import create
from mtlkit.balancing.methods.epo import epo_weights
from mtlkit.balancing.preference import PreferenceScalarisation
from mtlkit.config import ConfigError, parse_config
from mtlkit.data import Split, TensorBatches
from mtlkit.models import (
    PREFERENCE_MODELS,
    HardSharing,
    classification_head,
    create_backbone,
    wrap_preference,
)
from mtlkit.tasks import ClassificationTask
from mtlkit.training import FitProgress, Trainer, create_optimizer, process_group
from mtlkit.training.hooks.preference import PreferenceHook
from processes import run_group

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = ("cosmos", "phn", "pamal")
SHAPES = {"table": (6,), "image": (1, 16, 16)}


def _model(family: str, shape=(6,), seed: int = 0, **options):
    """``family`` around a small hard-sharing network of two tasks for inputs of ``shape``."""
    torch.manual_seed(seed)
    inner_shape = PREFERENCE_MODELS.get(family).inner_input_shape(shape, 2)
    trunk = create_backbone("mlp" if len(shape) == 1 else "lenet", inner_shape)
    heads = {name: classification_head(trunk.out_features, 3) for name in ("a", "b")}
    return wrap_preference(family, HardSharing(trunk, heads), **options)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", SHAPES)
def test_a_preference_changes_the_output(family, kind):
    model = _model(family, SHAPES[kind])
    x = torch.rand(5, *SHAPES[kind], generator=torch.Generator().manual_seed(1))
    model.set_preference([0.9, 0.1])
    first = model(x)
    model.set_preference([0.1, 0.9])
    second = model(x)
    for task in ("a", "b"):
        assert not torch.equal(first[task], second[task])
    model.set_preference([0.9, 0.1])
    for task in ("a", "b"):  # the output is a function of the preference alone
        assert torch.equal(model(x)[task], first[task])


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_then_decode_is_forward(family):
    model = _model(family)
    model.set_preference([0.3, 0.7])
    x = torch.rand(4, 6)
    whole, halves = model(x), model.decode(model.encode(x))
    for task in ("a", "b"):
        torch.testing.assert_close(whole[task], halves[task], rtol=0, atol=0)


def test_a_one_hot_preference_on_pamal_is_that_tasks_own_weight_set():
    model = _model("pamal")
    x = torch.rand(4, 6)
    names = list(model.target_shapes)
    for k in range(2):
        model.set_preference(torch.eye(2)[k])
        own = {f"{n}": model.sets[k][i] for i, n in enumerate(names)}
        for name, value in model.weights(model.preference).items():
            assert torch.equal(value, own[name])  # 1·θₖ + 0·θⱼ is θₖ in floating point
        expected = functional_call(model.target, own, (x,))
        got = model(x)
        for task in ("a", "b"):
            assert torch.equal(got[task], expected[task])
    assert not torch.equal(model.sets[0][0], model.sets[1][0])  # two distinct weight sets


def test_the_hypernetwork_makes_weights_of_the_targets_shapes():
    model = _model("phn", SHAPES["image"], hidden=8, layers=1)
    target = {name: p.shape for name, p in model.target.named_parameters()}
    generated = model.weights(torch.tensor([0.25, 0.75]))
    assert {name: value.shape for name, value in generated.items()} == target
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in model.target.parameters())
    assert {id(p) for p in model.shared_parameters()} == {id(p) for p in trainable}
    total = sum(v.sum() for v in generated.values())
    total.backward()  # every weight is a function of the hypernetwork's parameters
    assert all(p.grad is not None for p in trainable)


def test_cosmos_widens_the_input_by_one_channel_or_feature_per_task():
    cosmos = PREFERENCE_MODELS.get("cosmos")
    assert cosmos.inner_input_shape((6,), 3) == (9,)
    assert cosmos.inner_input_shape((1, 36, 36), 2) == (3, 36, 36)


@pytest.mark.parametrize("bad", [[0.5], [0.6, 0.6], [-0.5, 1.5], [math.nan, 1.0]])
def test_a_bad_preference_is_refused(bad):
    with pytest.raises(ValueError, match="preference"):
        _model("pamal").set_preference(bad)


def test_the_scalarisation_is_the_preference_sum_less_cosmos_cosine():
    losses = torch.tensor([0.5, 2.0], requires_grad=True)
    alpha = torch.tensor([0.3, 0.7])
    balancer = PreferenceScalarisation(2, cosine_weight=2.0)
    balancer.set_preference(alpha)
    total, weights = balancer.combine(losses)
    expected = (alpha * losses).sum() - 2.0 * torch.cosine_similarity(losses, alpha, dim=0)
    torch.testing.assert_close(total, expected)
    (gradient,) = torch.autograd.grad(expected, losses)
    torch.testing.assert_close(weights, gradient)


def _tasks() -> list[ClassificationTask]:
    return [ClassificationTask("a", 3), ClassificationTask("b", 3)]


def _split(n: int, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 6, generator=g)
    return Split(x, {t: torch.randint(0, 3, (n,), generator=g) for t in ("a", "b")})


def _trainer(family: str, balancer: str = "ew", replicas=None) -> Trainer:
    model = _model(family, cosine_weight=1.0) if family == "cosmos" else _model(family)
    bal = (
        PreferenceScalarisation(2, cosine_weight=model.cosine_weight)
        if balancer == "ew"
        else create(balancer, num_tasks=2)
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = create_optimizer("sgd", trainable, bal.parameters(), lr=0.1)
    hook = PreferenceHook(model, bal, concentration=0.5, seed=7)
    return Trainer(model, _tasks(), bal, optimizer, progress=False, hooks=[hook], replicas=replicas)


def _batches(size: int, rank: int = 0, world: int = 1):
    def make(epoch: int) -> TensorBatches:
        loader = TensorBatches(_split(16), size, shuffle=True, seed=3, rank=rank, world_size=world)
        loader.set_epoch(epoch)
        return loader

    return make


@pytest.mark.parametrize(
    ("family", "balancer"), [("cosmos", "ew"), ("phn", "epo"), ("pamal", "ew")]
)
def test_a_resumed_fit_trains_what_the_uninterrupted_one_did(family, balancer):
    """Two epochs of 4 steps in one go, or stopped at step 3 (mid-epoch) and resumed in a fresh
    trainer from the checkpoint: the same parameters bit for bit (the generator's state
    travels in the checkpoint)."""
    whole = _trainer(family, balancer)
    whole.fit(_batches(4), 2)
    saved: dict = {}

    def checkpoint(progress: FitProgress) -> None:
        if progress.global_step == 3:
            saved.update(copy.deepcopy(interrupted.state_dict(progress)))

    interrupted = _trainer(family, balancer)
    interrupted.fit(_batches(4), 2, checkpoint=checkpoint, checkpoint_every=1)
    resumed = _trainer(family, balancer)
    progress = resumed.load_state_dict(saved)
    assert progress.global_step == 3
    resumed.fit(_batches(4), 2, progress=progress)
    torch.testing.assert_close(
        dict(resumed.model.named_parameters()),
        dict(whole.model.named_parameters()),
        rtol=0,
        atol=0,
    )


def test_the_hook_draws_from_the_dirichlet_and_puts_the_uniform_preference_back():
    trainer = _trainer("pamal")
    hook = trainer.hooks[-1]
    draws = torch.stack([hook.draw() for _ in range(2000)])
    assert bool((draws >= 0).all())
    torch.testing.assert_close(draws.sum(1), torch.ones(2000), rtol=0, atol=1e-6)
    # Dirichlet(0.5, 0.5): mean 1/2, variance 1/8 per coordinate; 2000 draws: 5 standard errors
    assert abs(float(draws[:, 0].mean()) - 0.5) < 5 * math.sqrt(1 / 8 / 2000)
    assert abs(float(draws[:, 0].var()) - 1 / 8) < 0.02
    trainer.fit(_batches(4), 1)
    assert torch.equal(trainer.model.preference, torch.full((2,), 0.5))


def _rank(rank: int, folder) -> None:
    with process_group(torch.device("cpu")) as replicas:
        results = {}
        for family in FAMILIES:
            trainer = _trainer(family, replicas=replicas)
            trainer.fit(_batches(4, rank, 2), 2)
            results[family] = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    torch.save(results, folder / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_processes_at_batch_b_equal_one_at_batch_2b(tmp_path):
    """To 1e-6 (float32 sums in another order): every process draws the same preference."""
    assert run_group(_rank, 2, tmp_path) == [0, 0]
    for family in FAMILIES:
        one = _trainer(family)
        one.fit(_batches(8), 2)
        want = {k: v.detach() for k, v in one.model.named_parameters()}
        for rank in range(2):
            got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)[family]
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def _quadratic(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two losses ‖x − cₖ‖² with c₁ = (1, 0), c₂ = (0, 1): their values and (2, 2) Jacobian."""
    centres = torch.eye(2, dtype=torch.float64)
    return ((x - centres) ** 2).sum(1), 2 * (x - centres)


@pytest.mark.parametrize("ray", [[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]])
def test_epo_follows_its_ray(ray):
    """The paper's condition: each step off the ray decreases the non-uniformity μ of r⊙l to
    first order (aᵀCβ ≥ 0) without raising the loss of largest rₖlₖ; the descent ends on the
    ray (r₁l₁ = r₂l₂) and on the front (√l₁ + √l₂ = √2 for these two quadratics)."""
    r = torch.tensor(ray, dtype=torch.float64)
    x = torch.tensor([0.9, 0.8], dtype=torch.float64)
    for _ in range(400):
        losses, jacobian = _quadratic(x)
        gramian = jacobian @ jacobian.T
        beta = epo_weights(gramian, losses, r, 1e-8)
        assert bool((beta >= 0).all()) and abs(float(beta.sum()) - 1) < 1e-12
        weighted = r * losses
        relative = weighted / weighted.sum()
        mu = (relative * torch.log(2 * relative)).sum()
        if mu > 1e-8:
            adjustment = r * (torch.log(2 * relative) - mu)
            assert float(adjustment @ gramian @ beta) >= -1e-12
            worst = int(weighted.argmax())
            assert float((gramian @ beta)[worst]) >= -1e-12
        x = x - 0.05 * beta @ jacobian
    losses, _ = _quadratic(x)
    assert abs(float(r[0] * losses[0] - r[1] * losses[1])) < 1e-3
    assert abs(float(losses.sqrt().sum()) - math.sqrt(2)) < 1e-3


def test_epo_reads_its_preference_and_refuses_a_bad_one():
    assert torch.equal(
        create("epo", num_tasks=2, preference=[1, 3]).preference, torch.tensor([0.25, 0.75])
    )
    with pytest.raises(ValueError, match="preference"):
        create("epo", num_tasks=3, preference=[1.0, 1.0])


def test_the_config_keys(tiny_config):
    config = parse_config(tiny_config(model={"preference": "cosmos"}))
    assert config.model.preference_options == {"dirichlet": 1.0, "cosine_weight": 1.0}
    with pytest.raises(ConfigError, match="balancer.name"):
        parse_config(tiny_config(model={"preference": "phn"}, balancer={"name": "mgda"}))
    with pytest.raises(ConfigError, match="preference_options.width"):
        parse_config(tiny_config(model={"preference": "phn", "preference_options": {"width": 3}}))
    with pytest.raises(ConfigError, match="dirichlet"):
        parse_config(
            tiny_config(model={"preference": "pamal", "preference_options": {"dirichlet": 0}})
        )
    with pytest.raises(ConfigError, match="model.preference"):
        parse_config(tiny_config(model={"preference_options": {"dirichlet": 1}}))
    with pytest.raises(ConfigError, match="preference"):
        parse_config(tiny_config(model={"preference": "nope"}))


@pytest.fixture
def pamal_run(tmp_path, offline_data, tiny_config):
    """A trained PaMaL run (one epoch of the fake multi-mnist)."""
    from mtlkit.workflows import train

    train(parse_config(tiny_config(model={"preference": "pamal"})), tmp_path / "run")
    return tmp_path / "run"


def test_eval_serves_the_fronts_point_of_preference(pamal_run, capsys):
    from mtlkit.cli.main import main
    from mtlkit.workflows import evaluate_run

    ends = [evaluate_run(pamal_run, "cpu", preference=p) for p in ("1,0", [0.0, 1.0])]
    assert ends[0]["left"].summary() != ends[1]["left"].summary()
    assert evaluate_run(pamal_run, "cpu", preference="0.5,0.5")["left"].summary() == (
        evaluate_run(pamal_run, "cpu")["left"].summary()  # the default is the uniform one
    )
    assert main(["eval", str(pamal_run), "--device", "cpu", "--preference", "0.3,0.7"]) == 0


@pytest.mark.parametrize("bad", ["0.5", "0.6,0.6", "-0.5,1.5", "a,b", "0.3,0.3,0.4"])
def test_a_bad_preference_exits_2_naming_the_fix(pamal_run, capsys, bad):
    from mtlkit.cli.main import main

    for command in (["eval", str(pamal_run)], ["predict", str(pamal_run), "in.npy"]):
        assert main([*command, "--device", "cpu", f"--preference={bad}"]) == 2
        assert "2 numbers >= 0 that sum to 1" in capsys.readouterr().err


def test_a_preference_for_a_run_without_one_exits_2(tmp_path, offline_data, tiny_config, capsys):
    from mtlkit.cli.main import main
    from mtlkit.workflows import train

    train(parse_config(tiny_config()), tmp_path / "plain")
    assert main(["eval", str(tmp_path / "plain"), "--preference", "0.5,0.5"]) == 2
    assert "no preference-conditioned model" in capsys.readouterr().err


def test_pareto_on_a_set_learning_run_evaluates_its_rays(pamal_run, capsys):
    import json

    from mtlkit.cli.main import main
    from mtlkit.evaluation.pareto import hypervolume

    assert main(["pareto", str(pamal_run), "--rays", "5"]) == 0
    assert "hypervolume (5 test rays" in capsys.readouterr().out
    saved = json.loads((pamal_run / "pareto-set" / "pareto-set.json").read_text())
    assert sorted(p["preference"] for p in saved["points"]) == [
        [0.0, 1.0],
        [0.25, 0.75],
        [0.5, 0.5],
        [0.75, 0.25],
        [1.0, 0.0],
    ]
    losses = [[p["losses"]["left"], p["losses"]["right"]] for p in saved["points"]]
    assert len({tuple(x) for x in losses}) == 5  # each ray serves another network
    assert saved["reference"] == [2.0, 2.0]
    assert saved["protocol"] == "multi-mnist (sener), 20 test samples"  # the fake data
    assert saved["hypervolume"] == hypervolume(losses, (2.0, 2.0))
    assert (pamal_run / "pareto-set" / "report.md").is_file()


def test_the_test_rays_are_das_dennis_on_the_simplex():
    from mtlkit.workflows.pareto_set import test_rays

    assert len(test_rays(2)) == 25
    three = test_rays(3)
    assert len(three) == 21  # 5 divisions: the largest lattice not above 25 points
    assert all(min(r) >= 0 and abs(sum(r) - 1) < 1e-12 for r in three)
