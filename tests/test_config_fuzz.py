"""Property-based fuzzing of the configuration boundary, through the CLI entry point in process.

Every malformed config (a wrong value at any key, an unknown key, a wrong type, NaN or infinity,
an unknown method or a bad option, binary garbage, random text, a YAML bomb, a bad ``--set``)
must end in exit code 2 with one line on stderr, before any work starts, and never raise.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import mtlkit.workflows
from mtlkit.balancing import available
from mtlkit.cli.main import main
from mtlkit.config import ConfigError, load_config

EXAMPLES = 1000

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
"""Any text YAML can carry."""
not_numbers = st.one_of(text, st.booleans(), st.lists(st.integers(), max_size=2), st.none())
not_integers = st.one_of(not_numbers, st.floats(allow_nan=True, allow_infinity=True))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


def _floats_outside(low: float, high: float, *, low_open: bool = False) -> st.SearchStrategy:
    """Values a key allowing [low, high) refuses (low itself too when ``low_open``): numbers
    below or at or above ``high``, non-finite numbers and non-numbers. A key allowing ``high``
    filters it out."""
    below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False)
    return st.one_of(below, st.floats(min_value=high, allow_nan=False), non_finite, not_numbers)


def _ints_below(low: int) -> st.SearchStrategy:
    return st.one_of(st.integers(max_value=low - 1), not_integers)


def _names_except(*allowed: str) -> st.SearchStrategy:
    return st.one_of(text.filter(lambda s: s not in allowed), st.integers(), st.lists(text))


BAD_VALUES: dict[tuple[str, ...], st.SearchStrategy] = {
    ("name",): st.one_of(st.integers(), st.booleans(), st.lists(text, max_size=2)),
    ("seed",): st.one_of(_ints_below(0), st.integers(min_value=2**63)),
    ("data", "benchmark"): _names_except("multi-mnist", "multi-fashion", "multi-fashion-mnist"),
    ("data", "protocol"): _names_except("sener", "pareto"),
    ("data", "val_fraction"): _floats_outside(0.0, 1.0),
    ("data", "limit"): st.one_of(st.integers(max_value=0), st.floats(), text, st.booleans()),
    ("tasks", "include"): st.one_of(
        st.lists(_names_except("left", "right").filter(lambda s: s), min_size=1, max_size=2),
        st.just([]),
        st.just(["left", "left"]),
        st.integers(),
    ),
    ("tasks", "label_smoothing"): _floats_outside(0.0, 1.0),
    ("model", "backbone"): _names_except("cnn", "lenet", "mlp"),
    ("model", "head_hidden"): st.one_of(st.integers(max_value=0), st.floats(), text),
    ("optim", "name"): _names_except("sgd", "adam"),
    ("optim", "lr"): _floats_outside(0.0, math.inf, low_open=True),
    ("optim", "momentum"): _floats_outside(0.0, 1.0),
    ("optim", "weight_decay"): st.one_of(st.floats(max_value=-1e-300), non_finite, not_numbers),
    ("schedule", "name"): _names_except("none", "step", "cosine"),
    ("schedule", "step_size"): _ints_below(1),
    ("schedule", "gamma"): _floats_outside(0.0, 1.0, low_open=True).filter(lambda v: v != 1.0),
    ("train", "epochs"): _ints_below(1),
    ("train", "batch_size"): _ints_below(1),
    ("train", "eval_batch_size"): _ints_below(1),
    ("train", "device"): _names_except("auto", "cpu", "mps", "cuda", "cuda:0", "cuda:1"),
    ("train", "channels_last"): st.one_of(st.integers(), text, st.floats()),
    ("train", "progress"): st.one_of(st.integers(), text, st.floats()),
    ("train", "checkpoint_every"): _ints_below(0),
    ("train", "check_finite_every"): _ints_below(1),
    ("train", "on_nonfinite"): _names_except("stop", "skip"),
}
"""For every key, values it must refuse (wrong type, out of range, non-finite, unknown name)."""

bad_balancers = st.one_of(
    st.fixed_dictionaries({"name": _names_except(*(info.name for info in available()))}),
    st.fixed_dictionaries(  # λ ∈ [0, 1], both ends allowed
        {"name": st.just("fixed"), "lam": _floats_outside(0.0, 1.0).filter(lambda v: v != 1.0)}
    ),
    st.fixed_dictionaries({"name": st.just("fixed")}),
    st.fixed_dictionaries({"name": st.just("cagrad"), "c": _floats_outside(0.0, math.inf)}),
    st.fixed_dictionaries({"name": st.just("famo"), "w_lr": _floats_outside(0.0, math.inf)}),
    st.fixed_dictionaries({"name": st.sampled_from(["ew", "mgda", "pcgrad"]), "bogus": text}),
    st.fixed_dictionaries({"name": st.just("pcgrad"), "seed": not_integers}),
    not_numbers.filter(lambda v: v is not None),
)


@st.composite
def bad_settings(draw) -> dict:
    """A config dict that is valid but for one key: a bad value, an unknown key or section."""
    kind = draw(st.sampled_from(["value", "unknown key", "balancer"]))
    raw: dict = {}
    if kind == "value":
        path = draw(st.sampled_from(sorted(BAD_VALUES)))
        value = draw(BAD_VALUES[path])
        node = raw
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    elif kind == "unknown key":
        section = draw(st.sampled_from([None, "data", "tasks", "model", "optim", "train"]))
        key = draw(text.filter(lambda k: k and k not in _known_keys(section)))
        (raw if section is None else raw.setdefault(section, {}))[key] = draw(st.integers())
    else:
        raw["balancer"] = draw(bad_balancers)
    return raw


def _known_keys(section: str | None) -> set[str]:
    from mtlkit.config import ExperimentConfig

    model = (
        ExperimentConfig if section is None else ExperimentConfig.model_fields[section].annotation
    )
    return set(model.model_fields)


@st.composite
def yaml_bombs(draw) -> str:
    """Anchors and aliases that expand to width**depth > 10 000 values from a few hundred bytes."""
    width = draw(st.integers(3, 9))
    depth = draw(st.integers(2, 12).filter(lambda d: width**d > 10_000))
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, depth + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


documents = st.one_of(
    bad_settings().map(lambda raw: ("settings", raw)),
    bad_settings().map(lambda raw: ("override", raw)),
    st.binary(max_size=64).map(lambda data: ("bytes", data)),
    text.map(lambda data: ("text", data)),
    yaml_bombs().map(lambda data: ("text", data)),
)


def _flatten(raw: dict, prefix: str = "") -> list[str]:
    """``raw`` as --set assignments (leaves only)."""
    out = []
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            out += _flatten(value, f"{prefix}{key}.")
        else:
            dumped = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
            out.append(f"{prefix}{key}={dumped.removesuffix('...').strip()}")
    return out


def _is_valid(path: Path, overrides: list[str]) -> bool:
    try:
        load_config(path, overrides)
    except ConfigError:
        return False
    return True


@pytest.mark.slow
def test_a_thousand_malformed_configs_exit_2_with_one_line(monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("a malformed config reached training")

    monkeypatch.setattr(mtlkit.workflows, "train", no_work)
    folder = Path(tempfile.mkdtemp())
    path = folder / "config.yaml"
    tried = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(documents)
    def one(document: tuple[str, object]) -> None:
        kind, payload = document
        overrides: list[str] = []
        if kind == "bytes":
            path.write_bytes(payload)
        elif kind == "text":
            path.write_text(payload, encoding="utf-8")
        elif kind == "settings":
            path.write_text(yaml.safe_dump(payload), encoding="utf-8")
        else:  # the same mistakes through --set on a valid file
            path.write_text("name: fuzz\n", encoding="utf-8")
            overrides = _flatten(payload)
            assume(overrides and all("\n" not in o for o in overrides))
        if kind in ("bytes", "text"):  # the others are malformed by construction
            assume(not _is_valid(path, overrides))
        argv = ["train", str(path), "--out", str(folder / "run")]
        # --set=VALUE: argparse would read an override starting with "-" as an option
        argv += [f"--set={override}" for override in overrides]
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("mtlkit: config error: ") and err.count("\n") == 1, err
        tried.append(kind)

    one()
    assert len(tried) >= EXAMPLES
    assert not (folder / "run").exists()


@pytest.mark.parametrize("width", [9])
def test_a_yaml_bomb_is_refused_in_milliseconds(tmp_path, width):
    import time

    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 10000 values"):
        load_config(path)
    assert time.perf_counter() - start < 1.0  # 9**10 values if expanded
