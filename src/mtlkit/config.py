"""The experiment configuration: a YAML file, validated once, before any work starts.

Every field has a default, so a config file only states what differs. Unknown keys, wrong types,
out-of-range values, names that no registry knows (benchmark, protocol, backbone and its
options, task type and its loss and metric, balancing method and its options) and tasks that
the data lacks are refused with one line naming the key and what is allowed
(:class:`ConfigError`). The validated config is *resolved*: every default is filled in (the
benchmark's protocol, the backbone's and the balancing method's options, each task's loss and
metric), so the ``config.yaml`` a run writes reproduces it even if a default changes later.

Types are strict (``epochs: true`` or ``epochs: 2.5`` is not an integer, a string is not a number)
and numbers finite (``.nan`` and ``.inf`` are refused). A file is refused, before anything is
built, when it is not UTF-8 text, is empty, is larger than :data:`MAX_CONFIG_BYTES`, is not valid
YAML, nests deeper than :data:`MAX_YAML_DEPTH` or expands, through its anchors and aliases, to more
than :data:`MAX_YAML_NODES` values (a "billion laughs" bomb is a few hundred bytes).

The data comes from a built-in benchmark (``data.benchmark``), from one table whose rows are
labelled for several tasks (``data.table``), or from one table per task (``tasks.<name>.table``).
A table's tasks are declared under ``tasks:`` beside the keys that apply to every task
(``include`` and the loss techniques: ``label_smoothing``, ``focal_gamma``,
``instance_weights``, ``temperature``, ``distill``), which a task may set for itself::

    tasks:
      label_smoothing: 0.1
      churn: {type: binary, column: churned}
      plan: {type: classification, column: plan, label_smoothing: 0.0, focal_gamma: 2}

A benchmark's tasks are built in; ``tasks.<name>`` may still set their loss techniques.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mtlkit.balancing import create, describe
from mtlkit.data import BENCHMARKS, MIXINGS, DataError, benchmark_tasks
from mtlkit.data.tables import MAX_CATEGORIES, TARGETS
from mtlkit.models import (
    ACTIVATIONS,
    ARCHITECTURES,
    BACKBONES,
    EXPERT_KINDS,
    architecture_options,
    backbone_options,
)
from mtlkit.registry import Registry
from mtlkit.tasks import TASK_TYPES
from mtlkit.training.optim import OPTIMIZERS, SCHEDULES
from mtlkit.training.precision import PRECISIONS, check_precision


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


_TABLE_KEYS = ("features", "categorical", "max_categories", "test_fraction", "split_column")
"""The ``data`` keys that only tables read."""
_BENCHMARK_KEYS = ("correlation", "num_tasks")
"""The ``data`` keys that are options of one benchmark (see ``mtlkit data list``)."""
_MULTI_INPUT_KEYS = ("epoch", "mixing")
"""The ``data`` keys that only multi-input data (one dataset per task) reads."""


class DataConfig(_Section):
    """Where the data comes from, how it is split, and how multi-input batches are drawn."""

    benchmark: str | None = Field(None, description="default multi-mnist when there is no table")
    protocol: str | None = Field(None, description="default: the benchmark's first protocol")
    table: str | None = Field(None, description="a .csv, .parquet or .npz file")
    features: str | list[str] = Field("all", description="'all' (no task's column) or columns")
    categorical: list[str] = Field(default_factory=list, description="one-hot even if numeric")
    max_categories: int = Field(MAX_CATEGORIES, ge=1)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="tables only")
    split_column: str | None = Field(None, description="a column holding train / val / test")
    limit: int | None = Field(None, ge=1, description="keep only the first N samples per split")
    data_dir: str | None = None
    epoch: Literal["longest", "shortest"] | int = Field("longest", description="multi-input")
    mixing: str = Field("equal", description="multi-input: equal or proportional batch sizes")
    correlation: float | None = Field(None, ge=0.0, le=1.0, description="synthetic-correlation")
    num_tasks: int | None = Field(None, ge=1, le=100, description="gradnorm-toy: K")

    @property
    def benchmark_options(self) -> dict[str, Any]:
        """The benchmark's own options that are set (``correlation``, ``num_tasks``)."""
        keys = _BENCHMARK_KEYS
        return {key: getattr(self, key) for key in keys if getattr(self, key) is not None}

    @field_validator("benchmark")
    @classmethod
    def _known_benchmark(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(BENCHMARKS, value)

    @field_validator("features")
    @classmethod
    def _all_or_columns(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str) and value != "all":
            raise ValueError("must be 'all' or a list of columns")
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("must list one or more distinct columns")
        return value

    @field_validator("epoch")
    @classmethod
    def _epoch_policy(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be 'longest', 'shortest' or a positive number of steps")
        return value

    @field_validator("mixing")
    @classmethod
    def _known_mixing(cls, value: str) -> str:
        return _one_of(MIXINGS, value)


INSTANCE_WEIGHTS = ("none", "inverse_frequency")
"""The built-in per-row loss weights (a user's own scheme goes through the API)."""


def _temperature(value: float | str | None) -> float | str | None:
    if isinstance(value, float) and not value > 0.0:
        raise ValueError("must be a positive number or 'fit'")
    return value


class DistillConfig(_Section):
    """Distillation from a teacher: loss = (1 − α)·CE(y) + α·T²·KL(p_teacher,T ‖ p_student,T)."""

    teacher: str | None = Field(
        None,
        description="'ema' (self-distillation), a run folder holding the task, or a "
        "`mtlkit baselines` folder (its single-<task> run); None: off",
    )
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    temperature: float = Field(2.0, gt=0.0)
    ema_decay: float = Field(0.999, gt=0.0, lt=1.0, description="teacher 'ema' only")


class TaskEntry(_Section):
    """One task: its type, the column(s) holding its labels (tables), and its options.

    The technique keys left ``None`` take the value set for every task under ``tasks:``.
    """

    type: str | None = Field(None, description="tables: required; benchmarks: built in")
    column: str | None = None
    columns: list[str] | None = Field(None, description="multilabel: one 0/1 column per label")
    positive: str | int | float | bool | None = Field(None, description="binary only")
    loss: str | None = None
    metric: str | None = Field(None, description="the primary metric")
    table: str | None = Field(None, description="the task's own table (multi-input)")
    weight_column: str | None = Field(None, description="a column of per-row loss weights")
    label_smoothing: float | None = Field(None, ge=0.0, lt=1.0, description="classification")
    focal_gamma: float | None = Field(None, ge=0.0, description="classification: focal loss γ")
    instance_weights: str | None = Field(None, description="none or inverse_frequency")
    temperature: float | Literal["fit"] | None = Field(None, description="> 0, or fit")
    distill: DistillConfig | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(TASK_TYPES, value)

    @field_validator("instance_weights")
    @classmethod
    def _known_weights(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(INSTANCE_WEIGHTS, value)

    @field_validator("temperature")
    @classmethod
    def _positive_temperature(cls, value: float | str | None) -> float | str | None:
        return _temperature(value)


TECHNIQUES = ("label_smoothing", "focal_gamma", "instance_weights", "temperature", "distill")
"""The loss techniques a task may set for itself, defaulting to the value under ``tasks:``."""
_DATA_KEYS = ("type", "column", "columns", "positive", "loss", "metric", "table", "weight_column")
"""The keys of a task entry that describe a table's task."""


class TaskConfig(_Section):
    """The options of every task, and the declared tasks (every other key names one)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    include: list[str] | None = Field(None, description="train only these tasks (None: all)")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="classification tasks")
    focal_gamma: float | None = Field(None, ge=0.0, description="classification: focal loss γ")
    instance_weights: str = Field("none", description="none or inverse_frequency")
    temperature: float | Literal["fit"] = Field(1.0, description="classification: > 0, or fit")
    distill: DistillConfig = Field(default_factory=DistillConfig)

    @field_validator("instance_weights")
    @classmethod
    def _known_weights(cls, value: str) -> str:
        return _one_of(INSTANCE_WEIGHTS, value)

    @field_validator("temperature")
    @classmethod
    def _positive_temperature(cls, value: float | str) -> float | str:
        return _temperature(value)

    @property
    def entries(self) -> dict[str, TaskEntry]:
        """The declared tasks, by name, in declaration order."""
        return {
            name: TaskEntry.model_validate(raw) for name, raw in (self.model_extra or {}).items()
        }

    def techniques(self, name: str) -> dict[str, Any]:
        """Task ``name``'s loss techniques: its own where it sets them, else every task's."""
        entry = self.entries.get(name)
        chosen = {
            key: getattr(self, key)
            if entry is None or getattr(entry, key) is None
            else getattr(entry, key)
            for key in TECHNIQUES
        }
        if entry is not None and entry.distill is not None:  # the keys it sets, over the shared
            own = {key: getattr(entry.distill, key) for key in entry.distill.model_fields_set}
            chosen["distill"] = self.distill.model_copy(update=own)
        return chosen


_BACKBONE_KEYS = ("hidden", "activation", "dropout", "batch_norm", "width", "blocks")
"""The ``model`` keys that are options of a backbone (``mlp``; ``resnet``)."""
_SHARING_KEYS = (
    "experts",
    "task_experts",
    "levels",
    "k",
    "gamma",
    "expert",
    "stages",
    "self_weight",
)
"""The ``model`` keys that are options of a sharing architecture (see ``mtlkit architectures``)."""


class ModelConfig(_Section):
    """The network: a trunk (``backbone``, with its options), the heads, and how the tasks share
    it (``sharing``, with its options). ``batch_norm`` is an option of every built-in backbone
    but ``resnet`` (which always normalises), ``hidden``, ``activation`` and ``dropout`` of
    ``mlp``, ``width`` and ``blocks`` of ``resnet``; ``experts`` … ``self_weight`` of the sharing
    architectures."""

    backbone: str | None = Field(None, description="default: mlp for tables, else cnn")
    head_hidden: int | None = Field(None, ge=1, description="hidden width of each head's MLP")
    sharing: str = Field("hard", description="how the tasks share the trunk")
    hidden: list[int] | None = Field(None, description="mlp: hidden widths, first to last")
    activation: str | None = None
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    batch_norm: bool | None = None
    width: int | None = Field(None, ge=1, description="resnet: channels of the first stage")
    blocks: list[int] | None = Field(None, description="resnet: basic blocks per stage")
    experts: int | None = Field(None, ge=1, description="mmoe/cgc/ple/dselect-k: shared experts")
    task_experts: int | None = Field(None, ge=0, description="cgc/ple: experts per task")
    levels: int | None = Field(None, ge=1, description="ple: levels of experts")
    k: int | None = Field(None, ge=1, description="dselect-k: experts selected per task")
    gamma: float | None = Field(None, gt=0.0, description="dselect-k: smooth-step width")
    expert: str | None = Field(None, description="mlp or trunk: what a first-level expert is")
    stages: list[int] | None = Field(None, description="cross-stitch/mtan: stage indices")
    self_weight: float | None = Field(None, gt=0.0, le=1.0, description="cross-stitch")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(BACKBONES, value)

    @field_validator("sharing")
    @classmethod
    def _known_sharing(cls, value: str) -> str:
        return _one_of(ARCHITECTURES, value)

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 1):
            raise ValueError("must list one or more positive widths")
        return value

    @field_validator("blocks")
    @classmethod
    def _depths(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 1):
            raise ValueError("must list one or more positive numbers of blocks")
        return value

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(tuple(ACTIVATIONS), value)

    @field_validator("expert")
    @classmethod
    def _known_expert(cls, value: str | None) -> str | None:
        return value if value is None else _one_of(EXPERT_KINDS, value)

    @property
    def options(self) -> dict[str, Any]:
        """The backbone's options that are set."""
        return {key: getattr(self, key) for key in _BACKBONE_KEYS if getattr(self, key) is not None}

    @property
    def sharing_options(self) -> dict[str, Any]:
        """The sharing architecture's options that are set."""
        return {key: getattr(self, key) for key in _SHARING_KEYS if getattr(self, key) is not None}


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
    task_lr: dict[str, float] = Field(
        default_factory=dict, description="task -> its head's own learning rate"
    )
    task_lr_scale: dict[str, float] = Field(
        default_factory=dict, description="task -> its head's learning rate as a multiple of lr"
    )
    group_lr_scale: dict[str, float] = Field(
        default_factory=dict, description="layer group (stage1, ..., heads) -> a multiple of lr"
    )

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return _one_of(OPTIMIZERS, value)

    @field_validator("task_lr", "task_lr_scale", "group_lr_scale")
    @classmethod
    def _positive_rates(cls, value: dict[str, float]) -> dict[str, float]:
        for key, rate in value.items():
            if not rate > 0:
                raise ValueError(f"{key}: must be a positive number, got {rate}")
        return value


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
    precision: str = Field("fp32", description="fp32, bf16 (CPU/CUDA autocast), fp16 (CUDA)")
    compile: bool = Field(False, description="torch.compile the shared encoder")
    progress: bool = True
    log_task_cosine_every: int = Field(
        0, ge=0, description="record the task-gradient cosines every N steps (0: off)"
    )
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
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU index) or 'mps'")
        return value

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        return _one_of(PRECISIONS, value)

    @model_validator(mode="after")
    def _precision_on_device(self) -> TrainConfig:
        if self.device != "auto":  # 'auto' is checked by the trainer, once the device is known
            check_precision(self.precision, self.device)
        return self


class PenaltyConfig(_Section):
    """An L1 and an L2 penalty on one group of parameters: l1·Σ|θ| + l2/2·Σθ²."""

    l1: float = Field(0.0, ge=0.0)
    l2: float = Field(0.0, ge=0.0)


class RegularizationConfig(_Section):
    """L1 / L2 penalties per parameter group, separate from the optimizer's weight decay."""

    trunk: PenaltyConfig = Field(default_factory=PenaltyConfig)
    heads: PenaltyConfig = Field(default_factory=PenaltyConfig)
    balancer: PenaltyConfig = Field(default_factory=PenaltyConfig)


class NoiseConfig(_Section):
    """Noise on the training inputs (off in evaluation unless ``eval.views`` > 1)."""

    gaussian: float = Field(0.0, ge=0.0, description="standard deviation")
    salt_pepper: float = Field(0.0, ge=0.0, le=1.0, description="fraction of values")
    shift: int = Field(0, ge=0, description="images: random shifts of at most this many px")
    per_task: bool = Field(False, description="an independent draw for each task")


class EvalConfig(_Section):
    """Evaluation and prediction: M noisy views of each input combined into one output."""

    views: int = Field(1, ge=1, description="1: the input as is")
    combine: Literal["vote", "mean"] = "vote"


class EnsembleEntry(_Section):
    """Heads of tasks with the same classes, combined by the weighted mean of their
    probabilities (weights fitted on validation), scored against ``target``'s labels."""

    tasks: list[str]
    target: str | None = Field(None, description="default: the first task")


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
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    ensembles: dict[str, EnsembleEntry] = Field(
        default_factory=dict, description="name -> heads of one label space to combine"
    )

    @property
    def source(self) -> Literal["benchmark", "table", "tables"]:
        """Where the data comes from: a benchmark, one table, or one table per task."""
        if self.data.table is not None:
            return "table"
        if any(entry.table is not None for entry in self.tasks.entries.values()):
            return "tables"
        return "benchmark"

    @property
    def task_names(self) -> list[str]:
        """The tasks this config trains, in order: ``tasks.include``, else the benchmark's tasks
        or the table's declared ones."""
        if self.tasks.include is not None:
            return list(self.tasks.include)
        if self.source == "benchmark":
            data = self.data
            return list(benchmark_tasks(data.benchmark, data.protocol, **data.benchmark_options))
        return list(self.tasks.entries)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-ready dict of every setting, defaults included."""
        return self.model_dump(mode="json")


class FinetuneConfig(_Section):
    """What fine-tuning freezes and when it lets it learn again (the ``finetune:`` section of a
    config given to ``mtlkit finetune`` or ``mtlkit add-task``)."""

    freeze: list[str] = Field(
        default_factory=list, description="layer groups frozen from the start (stage1, ..., heads)"
    )
    unfreeze: dict[str, int] = Field(
        default_factory=dict, description="frozen group -> the epoch from which it learns"
    )

    @field_validator("freeze")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must list distinct layer groups")
        return value

    @model_validator(mode="after")
    def _unfreeze_frozen_groups(self) -> FinetuneConfig:
        for group, epoch in self.unfreeze.items():
            if group not in self.freeze:
                raise ValueError(
                    f"unfreeze.{group}: only a frozen group is unfrozen; add it to freeze"
                )
            if epoch < 2:
                raise ValueError(
                    f"unfreeze.{group}: the epoch must be 2 or later (from epoch 1 on, leave "
                    f"{group} out of freeze), got {epoch}"
                )
        return self


def parse_config(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a raw mapping into an :class:`ExperimentConfig`, or raise :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"the config must be a mapping of keys to values, got {type(raw).__name__}."
        )
    config = _validated(ExperimentConfig, raw, ())
    entries = {
        name: _validated(TaskEntry, value, ("tasks", name))
        for name, value in (config.tasks.model_extra or {}).items()
    }
    _resolve_data(config)
    task_names = _resolve_tasks(config, entries)
    _resolve_model(config)
    _resolve_balancer(config, len(config.tasks.include or task_names))
    _check_views(config)
    _check_task_rates(config.optim, config.tasks.include or task_names)
    _resolve_ensembles(config, config.tasks.include or task_names)
    return config


def _check_views(config: ExperimentConfig) -> None:
    """Several evaluation views need a noise to draw them from."""
    noise = config.noise
    if config.eval.views > 1 and not (noise.gaussian or noise.salt_pepper or noise.shift):
        raise ConfigError(
            "eval.views: several views of an input differ only by noise; set noise.gaussian, "
            "noise.salt_pepper or noise.shift (or eval.views: 1)."
        )


def _validated(model: type[BaseModel], raw: Any, prefix: tuple[str, ...]) -> Any:
    """``model.model_validate(raw)``, its first error as a :class:`ConfigError` whose key
    starts with ``prefix``."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        loc = (*prefix, *(str(part) for part in first["loc"]))
        key = ".".join(loc) or "(top level)"
        if first["type"] == "extra_forbidden":
            raise ConfigError(
                f"{key}: unknown key; {_allowed_keys(model, loc[len(prefix) :])}"
            ) from None
        value = first.get("input")
        shown = f" (got {_short_repr(value)})" if not isinstance(value, dict) else ""
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{key}: {message}{shown}") from None


def _allowed_keys(model: type[BaseModel], loc: tuple) -> str:
    parts = [str(part) for part in loc[:-1]]
    while parts:
        annotation = model.model_fields[parts.pop(0)].annotation
        if get_origin(annotation) is dict:  # a mapping of names to sections (ensembles)
            annotation = get_args(annotation)[1]
            parts.pop(0)
        model = annotation  # every nested section is a BaseModel
    return "allowed keys: " + ", ".join(model.model_fields) + "."


def _changed(section: BaseModel) -> set[str]:
    """The keys of ``section`` whose value is not their default (a resolved config, which
    writes every default, re-reads as the same config)."""
    fields = type(section).model_fields
    return {
        key
        for key, info in fields.items()
        if getattr(section, key) != info.get_default(call_default_factory=True)
    }


def _resolve_data(config: ExperimentConfig) -> None:
    """Check the data keys against the data's source; fill in the benchmark and its protocol."""
    data, source = config.data, config.source
    given = _changed(data)
    if source == "benchmark":
        for key in _TABLE_KEYS:
            if key in given:
                raise ConfigError(
                    f"data.{key}: only tables read it; set data.table (or a table per task)."
                )
        benchmark = "multi-mnist" if data.benchmark is None else data.benchmark
        entry = BENCHMARKS.get(benchmark)
        protocol = entry.protocols[0] if data.protocol is None else data.protocol
        for key in data.benchmark_options:
            if key not in entry.options:
                readers = [name for name in BENCHMARKS if key in BENCHMARKS.get(name).options]
                raise ConfigError(
                    f"data.{key}: benchmark {benchmark!r} does not read it; only "
                    f"{', '.join(readers)} does."
                )
        options = {**entry.options, **data.benchmark_options}
        try:
            benchmark_tasks(benchmark, protocol, **options)
        except DataError as error:
            raise ConfigError(f"data.protocol: {error}") from None
        data.benchmark, data.protocol = benchmark, protocol
        for key, value in options.items():
            setattr(data, key, value)
    else:
        for key in (*_BENCHMARK_KEYS, "benchmark", "protocol"):
            if getattr(data, key) is not None:
                raise ConfigError(f"data.{key}: a benchmark and a table exclude each other.")
        if source == "tables" and "table" in given:
            raise ConfigError("data.table: the tasks have tables of their own; remove one.")
        if data.split_column is not None:
            for key in ("val_fraction", "test_fraction"):
                if key in given:
                    raise ConfigError(
                        f"data.{key}: the split column {data.split_column!r} says each row's "
                        "split; remove one of them."
                    )
    multi_input = source == "tables" or (
        source == "benchmark" and BENCHMARKS.get(data.benchmark).multi_input
    )
    if not multi_input:
        for key in _MULTI_INPUT_KEYS:
            if key in given:
                raise ConfigError(
                    f"data.{key}: only multi-input data (one dataset per task) reads it."
                )


def _resolve_tasks(config: ExperimentConfig, entries: dict[str, TaskEntry]) -> list[str]:
    """Check the tasks (a table's entries against the task types, ``include`` against the
    data's tasks); fill in each entry's loss, metric and label smoothing. Returns the names."""
    for name, entry in entries.items():
        if entry.distill is not None and "ema_decay" in entry.distill.model_fields_set:
            raise ConfigError(
                f"tasks.{name}.distill.ema_decay: one average of the model teaches every task; "
                "set tasks.distill.ema_decay."
            )
    if config.source == "benchmark":
        names = list(
            benchmark_tasks(
                config.data.benchmark, config.data.protocol, **config.data.benchmark_options
            )
        )
        for name, entry in entries.items():
            data_keys = [key for key in _DATA_KEYS if getattr(entry, key) is not None]
            if data_keys:
                raise ConfigError(
                    f"tasks.{name}.{data_keys[0]}: declaring a task needs a table to read it "
                    f"from: set data.table (or tasks.{name}.table); {config.data.benchmark}'s "
                    f"tasks are built in (tasks.{name} may set {', '.join(TECHNIQUES)})."
                )
            if name not in names:
                raise ConfigError(
                    f"tasks.{name}: {config.data.benchmark} has no task {name!r}; its tasks: "
                    f"{', '.join(names)}."
                )
    else:
        if not entries:
            raise ConfigError(
                "tasks: a table needs its tasks declared, e.g. tasks: {churn: {type: binary, "
                "column: churned}}."
            )
        resolved = {name: _resolve_entry(config, name, entry) for name, entry in entries.items()}
        shared = config.tasks.model_dump(include={"include", *TECHNIQUES})
        config.tasks = TaskConfig(**shared, **resolved)
        names = list(entries)
    include = config.tasks.include
    if include is not None:
        unknown = [name for name in include if name not in names]
        if unknown or not include or len(set(include)) != len(include):
            source = config.data.benchmark if config.source == "benchmark" else "the table"
            raise ConfigError(
                f"tasks.include: {include} must name distinct tasks of {source}: "
                f"{', '.join(names)}."
            )
    return names


def _resolve_entry(config: ExperimentConfig, name: str, entry: TaskEntry) -> dict[str, Any]:
    """One table task checked against its type, as a plain dict with every default filled."""
    key = f"tasks.{name}"
    if entry.type is None:
        raise ConfigError(f"{key}.type: a table's task needs one of: {', '.join(TARGETS)}.")
    kind = TASK_TYPES.get(entry.type)
    if entry.type not in TARGETS:
        raise ConfigError(
            f"{key}.type: tables hold no {entry.type} task; use one of: {', '.join(TARGETS)}."
        )
    multilabel = entry.type == "multilabel"
    needed, other = ("columns", "column") if multilabel else ("column", "columns")
    if getattr(entry, needed) is None:
        what = "its label columns (one per label)" if multilabel else "the column of its labels"
        raise ConfigError(f"{key}.{needed}: a {entry.type} task needs {what}.")
    if getattr(entry, other) is not None:
        raise ConfigError(f"{key}.{other}: a {entry.type} task reads {needed}, not {other}.")
    if multilabel and (not entry.columns or len(set(entry.columns)) != len(entry.columns)):
        raise ConfigError(f"{key}.columns: list one or more distinct columns.")
    for option, value, choices in (
        ("loss", entry.loss, kind.losses),
        ("metric", entry.metric, kind.metrics),
    ):
        if value is not None and value not in choices:
            raise ConfigError(
                f"{key}.{option}: a {entry.type} task has no {option} {value!r}; choose one of: "
                f"{', '.join(choices)}."
            )
    if entry.positive is not None and entry.type != "binary":
        raise ConfigError(f"{key}.positive: only a binary task has a positive label.")
    if entry.type != "classification":
        for option in TECHNIQUES[1:]:
            if getattr(entry, option) not in (None, "none"):
                raise ConfigError(
                    f"{key}.{option}: only classification tasks take it; remove it here."
                )
    if (
        entry.weight_column is not None
        and config.tasks.techniques(name)["instance_weights"] != "none"
    ):
        raise ConfigError(
            f"{key}.weight_column: the task's rows are weighted by instance_weights already; "
            "keep one of the two."
        )
    if entry.label_smoothing is not None and "label_smoothing" not in kind.options:
        raise ConfigError(f"{key}.label_smoothing: only classification tasks are smoothed.")
    if (entry.table is None) != (config.source == "table"):
        raise ConfigError(
            f"{key}.table: give every task a table of its own, or none (and set data.table)."
        )
    resolved = entry.model_dump(exclude_none=True)
    if entry.distill is not None:  # only the keys it sets: the others follow tasks.distill
        resolved["distill"] = entry.distill.model_dump(exclude_unset=True)
    resolved["loss"] = entry.loss or kind.losses[0]
    resolved["metric"] = entry.metric or kind.metrics[0]
    if "label_smoothing" in kind.options:
        resolved["label_smoothing"] = (
            config.tasks.label_smoothing if entry.label_smoothing is None else entry.label_smoothing
        )
    return resolved


def _resolve_model(config: ExperimentConfig) -> None:
    """Fill in the backbone (mlp for tables, else cnn) and the options' defaults of the backbone
    and the sharing architecture; refuse an option that either does not take."""
    model = config.model
    backbone = model.backbone
    if backbone is None:
        backbone = "cnn" if config.source == "benchmark" else "mlp"
    known = backbone_options(backbone)
    for option in model.options:
        if option not in known:
            raise ConfigError(
                f"model.{option}: backbone {backbone!r} takes no option {option!r}; its options: "
                f"{', '.join(known) or 'none'}."
            )
    resolved = {**known, **model.options}
    for key in ("hidden", "blocks"):
        if key in resolved:
            resolved[key] = list(resolved[key])
    sharing, given = model.sharing, model.sharing_options
    own = ARCHITECTURES.get(sharing).options
    for option in given:
        if option not in own:
            raise ConfigError(
                f"model.{option}: sharing {sharing!r} takes no option {option!r}; its options: "
                f"{', '.join(own) or 'none'}."
            )
    try:
        sharing_resolved = architecture_options(sharing, given)
    except ValueError as error:
        raise ConfigError(f"model.{error}") from None
    config.model = ModelConfig(
        backbone=backbone,
        head_hidden=model.head_hidden,
        sharing=sharing,
        **resolved,
        **{k: v for k, v in sharing_resolved.items() if v is not None},
    )


def _resolve_balancer(config: ExperimentConfig, num_tasks: int) -> None:
    """Check the method and its options; fill in their defaults.

    A seeded method's ``seed`` is the one option left unresolved when not given: it follows the
    run's ``seed`` (see :func:`balancer_options`), so that ``--set seed=N`` on a saved config
    changes the method's draws along with the data's and the model's.
    """
    name, given = config.balancer.name, config.balancer.options
    try:
        options = {k: v for k, v in describe(name).options.items() if k != "seed"} | given
        method = create(name, num_tasks=num_tasks, **balancer_options(name, options, config.seed))
    except (ValueError, TypeError, OverflowError, RuntimeError) as error:
        # the method's own option checks (ValueError/TypeError), or torch refusing a value that
        # slipped past them (OverflowError/RuntimeError, e.g. a number too large for a tensor)
        raise ConfigError(f"balancer: {error}") from None
    sharing = config.model.sharing
    if (
        getattr(method, "on_features", False)
        and not ARCHITECTURES.get(sharing).shared_representation
    ):
        raise ConfigError(
            f"balancer.name: {name!r} works on one shared representation that every task reads, "
            f"and model.sharing {sharing!r} has none (each task reads features of its own); use "
            "a method on the shared parameters (e.g. mgda) or model.sharing: hard."
        )
    config.balancer = BalancerConfig(name=name, **options)


def _check_task_rates(optim: OptimConfig, tasks: list[str]) -> None:
    """Each per-task learning rate names a trained task, and no task has two."""
    for key in ("task_lr", "task_lr_scale"):
        for task in getattr(optim, key):
            if task not in tasks:
                raise ConfigError(
                    f"optim.{key}.{task}: no such task is trained; the tasks: {', '.join(tasks)}."
                )
    both = sorted(set(optim.task_lr) & set(optim.task_lr_scale))
    if both:
        raise ConfigError(
            f"optim.task_lr_scale.{both[0]}: task {both[0]!r} has a learning rate in "
            "optim.task_lr already; give it one or the other."
        )


def _resolve_ensembles(config: ExperimentConfig, tasks: list[str]) -> None:
    """Each ensemble names two or more distinct trained tasks and a target among them (the
    first by default). That they are classifications of one label space is checked when the
    data is loaded (:func:`mtlkit.workflows.ensemble.check_ensembles`)."""
    for name, entry in config.ensembles.items():
        key = f"ensembles.{name}"
        if len(entry.tasks) < 2 or len(set(entry.tasks)) != len(entry.tasks):
            raise ConfigError(f"{key}.tasks: name two or more distinct tasks.")
        for task in entry.tasks:
            if task not in tasks:
                raise ConfigError(
                    f"{key}.tasks: no task {task!r} is trained; the tasks: {', '.join(tasks)}."
                )
        if entry.target is None:
            entry.target = entry.tasks[0]
        elif entry.target not in entry.tasks:
            raise ConfigError(
                f"{key}.target: {entry.target!r} is not one of the ensemble's tasks: "
                f"{', '.join(entry.tasks)}."
            )


def balancer_options(name: str, options: dict[str, Any], run_seed: int) -> dict[str, Any]:
    """``options`` with ``seed = run_seed`` for a seeded method that does not set its own."""
    if "seed" in describe(name).options and "seed" not in options:
        return {**options, "seed": run_seed}
    return options


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


def set_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set a.b.c=value`` to a raw config mapping; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: write it as key=value, e.g. train.epochs=3.")
    dotted, text = assignment.split("=", 1)
    set_value(raw, dotted, _parse_yaml(text, f"--set {dotted}"), f"--set {assignment!r}")


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


_SECTION_IDENTITY = {"balancer": "name", "schedule": "name", "optim": "name", "data": "benchmark"}
"""A section whose identity key a derived config changes is taken from it alone (another
balancing method's options are not the first one's)."""


def derive_config(
    base: ExperimentConfig,
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
) -> tuple[ExperimentConfig, FinetuneConfig]:
    """A config that starts from ``base`` (a trained run's) and changes what the YAML file at
    ``path`` and the ``key=value`` ``overrides`` state, with its ``finetune:`` section apart.

    The file states only what differs (``train.epochs: 3``, ``optim.lr: 0.01``); a section whose
    identity it changes (``balancer.name``, ``data.benchmark``, …) is taken from the file alone.

    Raises:
        ConfigError: as :func:`load_config`, the ``finetune`` keys included.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_config_file(path)
        _anchor_table_paths(raw, Path(path).parent.absolute())
    for assignment in overrides:
        set_override(raw, assignment)
    plan = _validated(FinetuneConfig, raw.pop("finetune", None) or {}, ("finetune",))
    merged = base.to_dict()
    for section, value in raw.items():
        identity = _SECTION_IDENTITY.get(section)
        if (
            isinstance(value, dict)
            and isinstance(merged.get(section), dict)
            and (
                identity is None
                or value.get(identity, merged[section].get(identity))
                == merged[section].get(identity)
            )
        ):
            merged[section] = {**merged[section], **value}
        else:
            merged[section] = value
    return parse_config(merged), plan


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML config, apply ``key=value`` overrides, and validate the result.

    Table paths in the file (``data.table``, ``tasks.<name>.table``) are read from the file's
    folder, so that a config travels with its data; the resolved config holds them absolute.
    Paths given in ``overrides`` are read from the current folder.
    """
    path = Path(path)
    raw = read_config_file(path)
    _anchor_table_paths(raw, path.parent.absolute())
    for assignment in overrides:
        set_override(raw, assignment)
    return parse_config(raw)


def _anchor_table_paths(raw: dict[str, Any], folder: Path) -> None:
    """Make the relative table paths of a config file absolute, from the file's ``folder``."""
    sections = [raw.get("data")]
    tasks = raw.get("tasks")
    if isinstance(tasks, dict):
        sections += [entry for entry in tasks.values() if isinstance(entry, dict)]
    for section in sections:
        if isinstance(section, dict) and isinstance(section.get("table"), str):
            section["table"] = str(folder / Path(section["table"]).expanduser())


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
