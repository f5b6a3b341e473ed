"""``model.sharing`` and its options in the config, and ``mtlkit architectures``."""

from __future__ import annotations

import pytest

from mtlkit.cli.main import main
from mtlkit.config import ConfigError, parse_config
from mtlkit.models import ARCHITECTURES, HardSharing, MMoE
from mtlkit.tasks import ClassificationTask
from mtlkit.workflows.build import build_model


def test_sharing_defaults_to_hard_and_resolves_an_architectures_defaults():
    assert parse_config({}).model.sharing == "hard"
    model = parse_config({"model": {"sharing": "dselect-k", "k": 1}}).model
    assert model.sharing_options == {"experts": 4, "k": 1, "gamma": 1.0, "expert": "mlp"}
    again = parse_config({"model": model.model_dump(exclude_none=True)}).model
    assert again.sharing_options == model.sharing_options  # a resolved config re-reads as itself


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"sharing": "moe"}, "model.sharing: must be one of: hard, cross-stitch, mmoe"),
        ({"sharing": "mmoe", "k": 2}, "model.k: sharing 'mmoe' takes no option 'k'; its options"),
        ({"experts": 2}, "model.experts: sharing 'hard' takes no option 'experts'"),
        ({"sharing": "dselect-k", "k": 8}, r"model.k must be in 1..experts \(4\), got 8"),
        ({"sharing": "dselect-k", "experts": 3}, "model.experts must be a power of two"),
        ({"sharing": "mmoe", "expert": "big"}, "model.expert: must be one of: mlp, trunk"),
        ({"sharing": "cross-stitch", "self_weight": 1.5}, "model.self_weight: "),
        ({"width": 8}, "model.width: backbone 'cnn' takes no option 'width'"),
    ],
)
def test_bad_sharing_options_name_the_key(model, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config({"model": model})


@pytest.mark.parametrize("sharing", [n for n in ARCHITECTURES if n != "hard"])
def test_a_method_on_the_representation_is_refused_before_training_without_one(sharing):
    raw = {"model": {"sharing": sharing}, "balancer": {"name": "mgda-ub"}}
    with pytest.raises(
        ConfigError,
        match=f"balancer.name: 'mgda-ub' works on one shared repr.*"
        f"model.sharing '{sharing}' has none",
    ):
        parse_config(raw)
    raw["balancer"]["name"] = "mgda"
    assert parse_config(raw).balancer.name == "mgda"


def test_build_model_follows_model_sharing_and_checks_stages_against_the_trunk():
    tasks = [ClassificationTask("left", 10), ClassificationTask("right", 10)]
    model = build_model(parse_config({"model": {"sharing": "mmoe", "experts": 2}}), SHAPE, tasks)
    assert isinstance(model, MMoE) and len(model.shared_experts[0]) == 2
    assert isinstance(build_model(parse_config({}), SHAPE, tasks), HardSharing)
    config = parse_config({"model": {"sharing": "mtan", "stages": [5]}})
    with pytest.raises(ConfigError, match=r"model.stages: sharing 'mtan' takes distinct stage"):
        build_model(config, SHAPE, tasks)


SHAPE = (1, 28, 28)


def test_architectures_lists_every_architecture_with_its_options(capsys):
    assert main(["architectures"]) == 0
    out = capsys.readouterr().out
    for name in ARCHITECTURES:
        assert f"\n{name} " in f"\n{out}"
    assert "options: experts=4, expert='mlp'" in out
