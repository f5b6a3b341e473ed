"""The experiment configuration: a YAML file, validated once, before any work starts.

Every field has a default, so a config file only states what differs. Unknown keys, wrong types,
out-of-range values, names that no registry knows (benchmark, protocol, backbone, balancing
method and its options) and tasks that the benchmark lacks are refused with one line naming the
key and what is allowed (:class:`ConfigError`). The validated config is *resolved*: every default
is filled in, the balancing method's options included, so the ``config.yaml`` a run writes
reproduces it even if a default changes later.

Types are strict (``epochs: true`` or ``epochs: 2.5`` is not an integer, a string is not a number)
and numbers finite (``.nan`` and ``.inf`` are refused). A file is refused, before anything is
built, when it is not UTF-8 text, is empty, is larger than :data:`MAX_CONFIG_BYTES`, is not valid
YAML, nests deeper than :data:`MAX_YAML_DEPTH` or expands, through its anchors and aliases, to more
than :data:`MAX_YAML_NODES` values (a "billion laughs" bomb is a few hundred bytes).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mtlkit.balancing import create, describe
from mtlkit.data import BENCHMARKS, DataError, benchmark_tasks
from mtlkit.models import BACKBONES
from mtlkit.registry import Registry
from mtlkit.training.optim import OPTIMIZERS, SCHEDULES


class ConfigError(ValueError):
    """A configuration problem, phrased as one line naming the key and what is allowed."""


MAX_CONFIG_BYTES = 1 << 20
"""The largest config file read (1 MiB; real configs are a few hundred bytes)."""
MAX_YAML_NODES = 10_000
"""The most values a config may expand to, aliases counted once per use."""
MAX_YAML_DEPTH = 50
"""The deepest nesting of sections and lists a config may have."""


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )


def _one_of(choices: Registry | tuple[str, ...], value: str) -> str:
    names = choices.names() if isinstance(choices, Registry) else list(choices)
    if value not in names:
        raise ValueError(f"must be one of: {', '.join(names)}")
    return value


class DataConfig(_Section):
    """Which benchmark to build, and how."""

    benchmark: str = "multi-mnist"
    protocol: str = "sener"
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    limit: int | None = Field(None, ge=1, description="keep only the first N samples per split")
    data_dir: str | None = None

    @field_validator("benchmark")
    @classmethod
    def _known_benchmark(cls, value: str) -> str:
        return _one_of(BENCHMARKS, value)


class TaskConfig(_Section):
    """Options shared by every task's loss."""

    include: list[str] | None = Field(None, description="train only these tasks (None: all)")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)


class ModelConfig(_Section):
    """The shared network."""

    backbone: str = "cnn"
    head_hidden: int | None = Field(None, ge=1, description="hidden width of each head's MLP")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        return _one_of(BACKBONES, value)


class BalancerConfig(_Section):
    """The balancing method by name, with its own options (see ``mtlkit methods``)."""

    model_config = ConfigDict(extra="allow")
    name: str = "ew"

    @property
    def options(self) -> dict[str, Any]:
        """The method's options: every key but ``name``."""
        return dict(self.model_extra or {})


class OptimConfig(_Section):
    """The optimizer."""

    name: str = "sgd"
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only")
    weight_decay: float = Field(0.0, ge=0.0, description="on the model's parameters only")

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _one_of(OPTIMIZERS, value)


class ScheduleConfig(_Section):
    """The learning-rate schedule, stepped once per epoch."""

    name: str = "none"
    step_size: int = Field(10, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step: decay factor")

    @field_validator("name")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        return _one_of(SCHEDULES, value)


class TrainConfig(_Section):
    """The training loop."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    device: str = "auto"
    channels_last: bool = True
    progress: bool = True
    checkpoint_every: int = Field(
        100, ge=0, description="steps between checkpoints within an epoch (0: epoch ends only)"
    )
    check_finite_every: int = Field(
        50, ge=1, description="steps between reads of the non-finite flags (one host sync each)"
    )
    on_nonfinite: Literal["stop", "skip"] = "stop"

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", value):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return value


class ExperimentConfig(_Section):
    """A whole experiment: data, tasks, model, balancing, optimisation and the loop."""

    name: str = "experiment"
    seed: int = Field(0, ge=0, lt=2**63)
    data: DataConfig = Field(default_factory=DataConfig)
    tasks: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    balancer: BalancerConfig = Field(default_factory=BalancerConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-ready dict of every setting, defaults included."""
        return self.model_dump(mode="json")


def parse_config(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a raw mapping into an :class:`ExperimentConfig`, or raise :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"the config must be a mapping of keys to values, got {type(raw).__name__}."
        )
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"{key}: unknown key; {_allowed_keys(first['loc'])}") from None
        value = first.get("input")
        shown = f" (got {_short_repr(value)})" if not isinstance(value, dict) else ""
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{key}: {message}{shown}") from None
    _check_against_data_and_methods(config)
    return config


def _check_against_data_and_methods(config: ExperimentConfig) -> None:
    """The checks that need the benchmark and method registries, with the balancer's options
    resolved in place (defaults filled; a seeded method takes the run's seed unless given)."""
    try:
        tasks = benchmark_tasks(config.data.benchmark, config.data.protocol)
    except DataError as error:
        raise ConfigError(f"data.protocol: {error}") from None
    include = config.tasks.include
    if include is not None:
        unknown = [name for name in include if name not in tasks]
        if unknown or not include or len(set(include)) != len(include):
            raise ConfigError(
                f"tasks.include: {include} must name distinct tasks of {config.data.benchmark}: "
                f"{', '.join(tasks)}."
            )
    name, given = config.balancer.name, config.balancer.options
    try:
        defaults = describe(name).options
        options = {**defaults, **given}
        if "seed" in defaults and "seed" not in given:
            options["seed"] = config.seed
        create(name, num_tasks=len(include or tasks), **options)
    except (ValueError, TypeError, OverflowError, RuntimeError) as error:
        # the method's own option checks (ValueError/TypeError), or torch refusing a value that
        # slipped past them (OverflowError/RuntimeError, e.g. a number too large for a tensor)
        raise ConfigError(f"balancer: {error}") from None
    config.balancer = BalancerConfig(name=name, **options)


def config_difference(
    first: dict[str, Any], second: dict[str, Any], prefix: str = ""
) -> str | None:
    """The first dotted key whose value differs between two config dicts, as
    ``"key: A vs B"``; ``None`` when they are equal."""
    for key in sorted(set(first) | set(second), key=str):
        a, b = first.get(key), second.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = config_difference(a, b, f"{prefix}{key}.")
            if found is not None:
                return found
        elif a != b or (key in first) != (key in second):
            return f"{prefix}{key}: {_short_repr(a)} vs {_short_repr(b)}"
    return None


def _short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters, for an error message of one line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _allowed_keys(loc: tuple) -> str:
    model: type[BaseModel] = ExperimentConfig
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation
        model = annotation  # every nested section is a BaseModel
    return "allowed keys: " + ", ".join(model.model_fields) + "."


def set_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set a.b.c=value`` to a raw config mapping; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: write it as key=value, e.g. train.epochs=3.")
    dotted, text = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set {assignment!r}: the key {dotted!r} has an empty part.")
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment!r}: {key} is a value, not a section.")
        node = child
    node[keys[-1]] = _parse_yaml(text, f"--set {dotted}")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML config, apply ``key=value`` overrides, and validate the result."""
    raw = read_config_file(path)
    for assignment in overrides:
        set_override(raw, assignment)
    return parse_config(raw)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML config file, or :class:`ConfigError` (see the module's notes)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a YAML config.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes; it is no config.")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {error.start}); pass a YAML config."
        ) from None
    raw = _parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(
            f"{path} is empty; write the keys that differ from the defaults, or {{}}."
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path} must hold a mapping of keys to values, got {type(raw).__name__}."
        )
    return raw


def _parse_yaml(text: str, source: str) -> Any:
    """One YAML document, bounded in size and depth; :class:`ConfigError` naming ``source``."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source} is not valid YAML{where}: {error.problem}.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {' '.join(str(error).split())}") from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents that expand too far or nest too deeply, and
    reading ``1e-3`` (YAML 1.2's float, a string to YAML 1.1) as a number."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise ConfigError(f"the config nests deeper than {MAX_YAML_DEPTH} levels.")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)


_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that expands (aliases repeated) beyond :data:`MAX_YAML_NODES` values
    or refers to itself; linear in the number of distinct nodes."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise ConfigError(
                    f"the config expands to more than {MAX_YAML_NODES} values (YAML aliases "
                    "repeat what they name); write it out, or use fewer aliases."
                )
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise ConfigError("the config refers to itself through a YAML alias.")
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
