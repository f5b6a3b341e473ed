"""The experiment configuration: a YAML file, validated once, before any work starts.

Every field has a default, so a config file only states what differs. Unknown keys, wrong types,
out-of-range values, names that no registry knows (benchmark, protocol, backbone, balancing
method and its options) and tasks that the benchmark lacks are refused with one line naming the
key and what is allowed (:class:`ConfigError`). The validated config is *resolved*: every default
is filled in, the balancing method's options included, so the ``config.yaml`` a run writes
reproduces it even if a default changes later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mtlkit.balancing import create, describe
from mtlkit.data import BENCHMARKS, DataError, benchmark_tasks
from mtlkit.models import BACKBONES
from mtlkit.registry import Registry
from mtlkit.training.optim import OPTIMIZERS, SCHEDULES


class ConfigError(ValueError):
    """A configuration problem, phrased as one line naming the key and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
    log_task_cosine_every: int = Field(
        0, ge=0, description="record the task-gradient cosines every N steps (0: off)"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value != "auto" and value.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return value


class ExperimentConfig(_Section):
    """A whole experiment: data, tasks, model, balancing, optimisation and the loop."""

    name: str = "experiment"
    seed: int = Field(0, ge=0)
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
        shown = f" (got {value!r})" if not isinstance(value, dict) else ""
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
    except (ValueError, TypeError) as error:
        raise ConfigError(f"balancer: {error}") from None
    config.balancer = BalancerConfig(name=name, **options)


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
    set_value(raw, dotted, yaml.safe_load(text), f"--set {assignment!r}")


def set_value(raw: dict[str, Any], dotted: str, value: Any, where: str | None = None) -> None:
    """Set the dotted key ``dotted`` (``optim.lr``) of a raw config mapping to ``value``.

    ``where`` names the setting in errors (default: the key).
    """
    where = where or dotted
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"{where}: the key {dotted!r} has an empty part.")
    node = raw
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {key} is a value, not a section.")
        node = child
    node[keys[-1]] = value


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML config, apply ``key=value`` overrides, and validate the result."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a YAML config.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values.")
    for assignment in overrides:
        set_override(raw, assignment)
    return parse_config(raw)
