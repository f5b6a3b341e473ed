"""Head ensembles: one-hot weights give the chosen head exactly, the fitted weights are the
maximum-likelihood mixture (its optimality conditions hold), and what is refused."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from mtlkit.cli.main import main
from mtlkit.config import ConfigError, parse_config
from mtlkit.evaluation import HeadEnsemble, fit_weights
from mtlkit.workflows import train
from mtlkit.workflows.ensemble import ensemble_heads
from processes import run_group

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _logits(seed: int, n: int = 200, classes: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(n, classes, generator=g) * 2 for name in ("a", "b", "c")}


@pytest.mark.parametrize("chosen", [0, 1, 2])
def test_one_hot_weights_equal_the_chosen_head(chosen):
    outputs = _logits(0)
    weights = tuple(float(k == chosen) for k in range(3))
    combined = HeadEnsemble(("a", "b", "c"), weights).probabilities(outputs)
    head = torch.softmax(outputs["abc"[chosen]], -1)
    assert torch.equal(combined, head)  # 1·p + 0·q is p exactly
    assert torch.equal(combined.argmax(-1), outputs["abc"[chosen]].argmax(-1))


def test_fitted_weights_satisfy_the_optimality_conditions_of_the_mixture():
    """KKT of min −mean log Σ wₖpₖₙ on the simplex: the gradient −mean(pₖₙ / p̄ₙ) equals −1
    where wₖ > 0 and is ≥ −1 where wₖ = 0 (the EM fixed point)."""
    g = torch.Generator().manual_seed(3)
    targets = torch.randint(0, 5, (300,), generator=g)
    good = torch.softmax(
        torch.nn.functional.one_hot(targets, 5) * 2.0 + torch.randn(300, 5, generator=g), -1
    )
    fair = torch.softmax(torch.randn(300, 5, generator=g), -1)
    noisy = torch.softmax(
        torch.nn.functional.one_hot(targets, 5) * 1.0 + torch.randn(300, 5, generator=g) * 2, -1
    )
    probabilities = [good, fair, noisy]
    weights = torch.tensor(
        fit_weights(probabilities, targets, iterations=20000), dtype=torch.float64
    )
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-12) and (weights >= 0).all()
    likelihood = torch.stack(
        [p.double().gather(1, targets.view(-1, 1)).squeeze(1) for p in probabilities]
    )
    ratio = (likelihood / (weights @ likelihood)).mean(1)
    active = weights > 1e-6
    assert torch.allclose(ratio[active], torch.ones_like(ratio[active]), atol=1e-6)
    assert (ratio[~active] <= 1 + 1e-6).all()
    assert weights[0] == weights.max()  # the good head weighs most


def test_a_perfect_head_takes_all_the_weight_against_a_uniform_one():
    targets = torch.arange(10) % 4
    perfect = torch.nn.functional.one_hot(targets, 4).double()
    uniform = torch.full((10, 4), 0.25, dtype=torch.float64)
    weights = fit_weights([perfect, uniform], targets, iterations=5000)
    assert weights[0] > 0.999


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="two or more heads"):
        HeadEnsemble(("a",), (1.0,))
    with pytest.raises(ValueError, match="sum to 1"):
        HeadEnsemble(("a", "b"), (0.7, 0.7))
    with pytest.raises(ValueError, match="share one"):
        fit_weights([torch.ones(3, 2), torch.ones(4, 2)], torch.zeros(3, dtype=torch.long))


@pytest.fixture
def trained(tmp_path, offline_data, tiny_config):
    raw = tiny_config(model={"backbone_options": {"hidden": [16]}})
    return train(parse_config(raw), tmp_path / "run").run_dir


@pytest.mark.slow
def test_a_runs_heads_of_one_label_space_give_a_row_of_their_own(trained, capsys):
    result = ensemble_heads(trained, ["left", "right"])
    assert list(result.rows) == ["left", "right", "ensemble"] and result.target == "left"
    assert sum(result.ensemble.weights) == pytest.approx(1.0)
    for report in result.rows.values():
        assert 0.0 <= report.accuracy <= 1.0
    assert main(["ensemble", str(trained), "--tasks", "left,right", "--target", "right"]) == 0
    assert "ensemble" in capsys.readouterr().out
    record = json.loads((trained / "ensemble-left-right.json").read_text())
    assert record["target"] == "right" and set(record["test"]) == {"left", "right", "ensemble"}


@pytest.mark.slow
def test_a_configured_ensemble_is_a_row_of_the_runs_results(tmp_path, offline_data, tiny_config):
    raw = tiny_config(
        model={"backbone_options": {"hidden": [16]}},
        ensembles={"digits": {"tasks": ["left", "right"]}},
    )
    config = parse_config(raw)
    assert config.ensembles["digits"].target == "left"  # resolved: written in config.yaml
    result = train(config, tmp_path / "run")
    assert set(result.test) == {"left", "right"}  # the tasks' results are the tasks'
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    digits = metrics["ensembles"]["digits"]
    assert digits["target"] == "left" and sum(digits["weights"]) == pytest.approx(1.0)
    assert set(digits["test"]) == {"left", "right", "ensemble"}
    assert digits["test"]["left"]["accuracy"] == pytest.approx(result.test["left"].accuracy)
    assert "digits (ensemble → left)" in (tmp_path / "run" / "report.md").read_text()


def _train_ensembles(rank: int, fake, config: str, out: str) -> int:
    from mtlkit.data import load_benchmark
    from mtlkit.workflows import build

    build.load_benchmark = lambda name, **options: load_benchmark(
        name, **{**options, **fake.kwargs}
    )
    return main(["train", config, "--out", out])


@pytest.mark.slow
def test_configured_ensembles_under_two_processes_score_the_whole_test_split(
    tmp_path, fake_base_data, tiny_config
):
    """The main process scores the ensembles alone (on the whole split) while the others wait:
    no collective of its metrics may wait for processes that never join it."""
    raw = tiny_config(
        model={"backbone_options": {"hidden": [16]}},
        ensembles={"digits": {"tasks": ["left", "right"]}},
    )
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    codes = run_group(_train_ensembles, 2, fake_base_data, str(config), str(out), timeout=90)
    assert codes == [0, 0]
    metrics = json.loads((out / "metrics.json").read_text())
    left = metrics["ensembles"]["digits"]["test"]["left"]
    assert left["support"] == metrics["test"]["left"]["support"]  # every test row, once
    assert left["accuracy"] == pytest.approx(metrics["test"]["left"]["accuracy"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"tasks": ["left"]}, "ensembles.e.tasks: name two or more distinct tasks"),
        ({"tasks": ["left", "middle"]}, "ensembles.e.tasks: no task 'middle' is trained"),
        ({"tasks": ["left", "right"], "target": "up"}, "ensembles.e.target: 'up' is not one"),
        ({"tasks": ["left", "right"], "weights": [1, 0]}, "ensembles.e.weights: unknown key"),
    ],
)
def test_bad_ensembles_are_refused_when_the_config_is_read(entry, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"ensembles": {"e": entry}})


def test_an_ensemble_without_validation_is_refused_before_training(tmp_path, offline_data):
    raw = {"data": {"val_fraction": 0.0}, "ensembles": {"e": {"tasks": ["left", "right"]}}}
    with pytest.raises(ConfigError, match="ensembles.e: its weights are fitted on the validation"):
        train(parse_config(raw), tmp_path / "run")
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before any training


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tasks", "target", "message"),
    [
        (["left"], None, "two or more distinct tasks"),
        (["left", "middle"], None, "the run has no task 'middle'"),
        (["left", "right"], "up", "--target up: choose one of"),
    ],
)
def test_refusals(trained, tasks, target, message):
    with pytest.raises(ConfigError, match=message):
        ensemble_heads(trained, tasks, target)
