"""The name → entry tables the config and the CLI choose from."""

from __future__ import annotations

import pytest

from mtlkit.data import BENCHMARKS
from mtlkit.models import BACKBONES
from mtlkit.registry import Registry, UnknownNameError


def test_a_registry_names_its_entries_and_refuses_twins():
    registry: Registry[int] = Registry("widget")
    registry.register("a", 1)

    @registry.register("b")
    def make_b() -> int:
        return 2

    assert registry.names() == ["a", "b"] and "a" in registry and len(registry) == 2
    assert registry.get("b") is make_b
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; choose one of: a, b"):
        registry.get("c")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a", 3)


def test_the_configs_choices_are_the_registries(monkeypatch):
    """A backbone registered in one line is a valid ``model.backbone``: no second list."""
    from mtlkit.config import ConfigError, parse_config

    assert BACKBONES.names() == ["cnn", "lenet", "mlp", "resnet", "segnet"]
    assert BENCHMARKS.names() == [
        "multi-mnist",
        "multi-fashion",
        "multi-fashion-mnist",
        "mnist+fashion",
        "synthetic-correlation",
        "gradnorm-toy",
        "multi-mnist-dense",
        "nyuv2",
        "cityscapes",
    ]
    with pytest.raises(ConfigError, match="must be one of: cnn, lenet, mlp, resnet, segnet"):
        parse_config({"model": {"backbone": "tiny"}})
    monkeypatch.setitem(BACKBONES._entries, "tiny", BACKBONES.get("mlp"))
    assert parse_config({"model": {"backbone": "tiny"}}).model.backbone == "tiny"
