"""Config validation: every mistake is one clear line naming the key."""

import pytest

from mtlkit.config import ConfigError, load_config, parse_config, set_override


def test_defaults_are_valid():
    config = parse_config({})
    assert config.balancer.name == "ew" and config.train.epochs >= 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"trian": {}}, r"^trian: unknown key; allowed keys: name, seed"),
        ({"train": {"epoch": 3}}, r"^train\.epoch: unknown key; allowed keys: epochs"),
        ({"train": {"epochs": 0}}, r"^train\.epochs: .*greater than or equal to 1.*got 0"),
        ({"train": {"batch_size": "big"}}, r"^train\.batch_size: .*integer.*got 'big'"),
        ({"optim": {"name": "rmsprop"}}, r"^optim\.name: must be one of: sgd, adam.*rmsprop"),
        ({"schedule": {"name": "linear"}}, r"^schedule\.name: must be one of: none, step, cosine"),
        (
            {"model": {"backbone": "vgg"}},
            r"^model\.backbone: must be one of: cnn, lenet, mlp, resnet",
        ),
        ({"data": {"val_fraction": 1.0}}, r"^data\.val_fraction: .*less than 1"),
        ({"balancer": {"name": "nope"}}, r"^balancer: unknown balancing method 'nope'; choose"),
        ({"balancer": {"name": "fixed", "lamda": 0.3}}, r"^balancer: .*no option 'lamda'"),
        ({"train": {"device": "tpu"}}, r"^train\.device: must be 'auto'"),
        ({"data": {"benchmark": "nope"}}, r"^data\.benchmark: must be one of: multi-mnist, "),
        (
            {"data": {"benchmark": "multi-fashion", "protocol": "sener"}},
            r"^data\.protocol: .*'sener' is not defined",
        ),
        ({"data": {"protocol": ""}}, r"^data\.protocol: .*protocol '' is not defined"),
        ({"tasks": {"include": ["up"]}}, r"^tasks\.include: .* tasks of multi-mnist: left, right"),
        ({"balancer": {"name": "cagrad", "c": -1}}, r"^balancer: cagrad: c must be"),
        ({"balancer": {"name": "fixed"}}, r"^balancer: fixed needs exactly one of"),
    ],
)
def test_errors_name_the_key_and_what_is_allowed(raw, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(raw)


def test_overrides_parse_values_as_yaml_and_create_sections():
    raw = {"train": {"epochs": 5}}
    set_override(raw, "train.epochs=2")
    set_override(raw, "balancer.lam=0.25")
    set_override(raw, "tasks.include=[left]")
    assert raw == {
        "train": {"epochs": 2},
        "balancer": {"lam": 0.25},
        "tasks": {"include": ["left"]},
    }


@pytest.mark.parametrize("bad", ["train.epochs", "=3", "train..epochs=3"])
def test_malformed_overrides_are_refused(bad):
    with pytest.raises(ConfigError, match="--set"):
        set_override({}, bad)


def test_load_config_reports_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  epochs: 4\n")
    assert load_config(good, ["train.epochs=7"]).train.epochs == 7


def test_seeded_methods_follow_the_run_seed_unless_the_config_sets_theirs():
    import torch

    from mtlkit.balancing import create
    from mtlkit.workflows.build import build_balancer

    losses = [torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)]

    def weights(balancer):
        return balancer.combine(torch.stack(losses))[1]

    run_seed = build_balancer(parse_config({"seed": 3, "balancer": {"name": "rlw"}}), 2)
    assert torch.equal(weights(run_seed), weights(create("rlw", num_tasks=2, seed=3)))
    own_seed = build_balancer(parse_config({"seed": 3, "balancer": {"name": "rlw", "seed": 9}}), 2)
    assert torch.equal(weights(own_seed), weights(create("rlw", num_tasks=2, seed=9)))
