"""``model.sharing`` and its options in the config, and ``mtlkit architectures``."""

from __future__ import annotations

import pytest
import torch

from mtlkit.cli.main import main
from mtlkit.config import ConfigError, parse_config, upgrade_saved_config
from mtlkit.models import ARCHITECTURES, Architecture, HardSharing, MMoE
from mtlkit.tasks import ClassificationTask
from mtlkit.workflows.build import build_model


def test_sharing_defaults_to_hard_and_resolves_an_architectures_defaults():
    assert parse_config({}).model.sharing == "hard"
    model = parse_config({"model": {"sharing": "dselect-k", "sharing_options": {"k": 1}}}).model
    assert model.sharing_options == {"experts": 4, "k": 1, "gamma": 1.0, "expert": "mlp"}
    again = parse_config({"model": model.model_dump(exclude_none=True)}).model
    assert again.sharing_options == model.sharing_options  # a resolved config re-reads as itself


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"sharing": "moe"}, "model.sharing: must be one of: hard, cross-stitch, mmoe"),
        (
            {"sharing": "mmoe", "sharing_options": {"k": 2}},
            "^model.sharing_options.k: sharing 'mmoe' takes no option 'k'; its options",
        ),
        (
            {"sharing_options": {"experts": 2}},
            "^model.sharing_options.experts: sharing 'hard' takes no option 'experts'",
        ),
        (
            {"sharing": "dselect-k", "sharing_options": {"k": 8}},
            r"^model.sharing_options.k must be in 1..experts \(4\), got 8",
        ),
        (
            {"sharing": "dselect-k", "sharing_options": {"experts": 3}},
            "^model.sharing_options.experts must be a power of two",
        ),
        (
            {"sharing": "mmoe", "sharing_options": {"expert": "big"}},
            "^model.sharing_options.expert must be one of: mlp, trunk",
        ),
        (
            {"sharing": "cross-stitch", "sharing_options": {"self_weight": 1.5}},
            r"^model.sharing_options.self_weight must be in \(0, 1\]",
        ),
        (
            {"sharing": "dselect-k", "sharing_options": {"gamma": "wide"}},
            r"^model.sharing_options.gamma: Input should be a valid number \(got 'wide'\)",
        ),
        (
            {"sharing": "mtan", "sharing_options": {"stages": "01"}},
            "^model.sharing_options.stages: 'str' instances are not allowed",
        ),
        (
            {"backbone_options": {"width": 8}},
            "^model.backbone_options.width: backbone 'cnn' takes no option 'width'",
        ),
        (
            {"backbone": "resnet", "backbone_options": {"width": 8.5}},
            r"^model.backbone_options.width: Input should be a valid integer \(got 8.5\)",
        ),
        ({"backbone_options": []}, "^model.backbone_options: Input should be a valid dictionary"),
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
    mmoe = {"model": {"sharing": "mmoe", "sharing_options": {"experts": 2}}}
    model = build_model(parse_config(mmoe), SHAPE, tasks)
    assert isinstance(model, MMoE) and len(model.shared_experts[0]) == 2
    assert isinstance(build_model(parse_config({}), SHAPE, tasks), HardSharing)
    config = parse_config({"model": {"sharing": "mtan", "sharing_options": {"stages": [5]}}})
    with pytest.raises(
        ConfigError, match=r"^model.sharing_options.stages: sharing 'mtan' takes distinct stage"
    ):
        build_model(config, SHAPE, tasks)


def test_a_backbone_option_value_the_trunk_refuses_names_the_key_when_built():
    tasks = [ClassificationTask("left", 10)]
    config = parse_config({"model": {"backbone": "mlp", "backbone_options": {"hidden": []}}})
    with pytest.raises(
        ConfigError, match=r"^model.backbone_options: hidden must be one or more positive widths"
    ):
        build_model(config, SHAPE, tasks)


@pytest.mark.parametrize(
    ("key", "home"),
    [
        ("experts", "sharing_options"),
        ("stages", "sharing_options"),
        ("gamma", "sharing_options"),
        ("self_weight", "sharing_options"),
        ("hidden", "backbone_options"),
        ("batch_norm", "backbone_options"),
        ("width", "backbone_options"),
    ],
)
def test_a_former_flat_option_names_its_new_key(key, home):
    with pytest.raises(ConfigError, match=rf"^model\.{key} moved: use model\.{home}\.{key}\.$"):
        parse_config({"model": {key: 1}})


def test_a_new_architecture_with_options_needs_no_schema_edit(monkeypatch):
    class Gated(HardSharing):
        """Hard sharing with an option, registered by a user."""

        def __init__(self, trunk, heads, *, temperature: float = 1.0) -> None:
            super().__init__(trunk, heads)
            self.temperature = temperature

    monkeypatch.setitem(ARCHITECTURES._entries, "gated", Architecture(Gated))
    config = parse_config({"model": {"sharing": "gated", "sharing_options": {"temperature": 2}}})
    assert config.model.sharing_options == {"temperature": 2}
    assert build_model(config, SHAPE, [ClassificationTask("left", 10)]).temperature == 2
    with pytest.raises(ConfigError, match="sharing_options.temperature: Input should be a valid"):
        parse_config({"model": {"sharing": "gated", "sharing_options": {"temperature": "hot"}}})
    assert parse_config({"model": {"sharing": "gated"}}).model.sharing_options == {
        "temperature": 1.0
    }


SHAPE = (1, 28, 28)


def test_architectures_lists_every_architecture_with_its_options(capsys):
    assert main(["architectures"]) == 0
    out = capsys.readouterr().out
    for name in ARCHITECTURES:
        assert f"\n{name} " in f"\n{out}"
    assert "options: experts=4, expert='mlp'" in out


def test_a_saved_config_of_the_flat_layout_reads_as_the_nested_one():
    nested = parse_config(
        {
            "model": {
                "backbone": "mlp",
                "backbone_options": {"hidden": [8]},
                "sharing": "dselect-k",
                "sharing_options": {"k": 1},
            }
        }
    )
    flat = nested.to_dict()
    model = flat["model"]
    unused = dict.fromkeys(("width", "blocks", "task_experts", "levels", "stages", "self_weight"))
    flat["model"] = {
        **{key: model[key] for key in ("backbone", "head_hidden", "sharing")},
        **unused,
        **model["backbone_options"],
        **model["sharing_options"],
    }
    with pytest.raises(ConfigError, match="^model.width moved: use model.backbone_options.width"):
        parse_config(flat)
    assert parse_config(upgrade_saved_config(flat)) == nested
    assert upgrade_saved_config(nested.to_dict()) == nested.to_dict()  # the current layout as is


def test_head_batch_norm_normalises_every_heads_hidden_layer_and_names_the_missing_width():
    tasks = [ClassificationTask("left", 10), ClassificationTask("right", 10)]
    config = parse_config({"model": {"head_hidden": 16, "head_batch_norm": True}})
    model = build_model(config, SHAPE, tasks)
    for task in ("left", "right"):
        assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.heads[task].modules()) == 1
    assert parse_config(config.to_dict()) == config  # written to config.yaml, read back as is
    with pytest.raises(ConfigError, match=r"^model: task 'left': .*model\.head_hidden"):
        build_model(parse_config({"model": {"head_batch_norm": True}}), SHAPE, tasks)
