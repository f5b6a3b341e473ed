"""Validating a raw config into an :class:`~mtlkit.config.experiment.ExperimentConfig`, once,
before any work starts.

Unknown keys, wrong types, out-of-range values, names that no registry knows (benchmark,
protocol, backbone and its options, task type and its loss and metric, balancing method and its
options) and tasks that the data lacks are refused with one line naming the key and what is
allowed (:class:`~mtlkit.config.errors.ConfigError`). The validated config is *resolved*: every
default is filled in (the benchmark's recipe and protocol, the backbone's and the balancing
method's options, each task's loss and metric), so the ``config.yaml`` a run writes reproduces
it even if a default changes later.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from mtlkit.balancing import create, describe
from mtlkit.config.data_sections import (
    _BENCHMARK_KEYS,
    _DATA_KEYS,
    _MULTI_INPUT_KEYS,
    _TABLE_KEYS,
    TECHNIQUES,
    TaskConfig,
    TaskEntry,
)
from mtlkit.config.errors import ConfigError
from mtlkit.config.experiment import ExperimentConfig
from mtlkit.config.model_sections import (
    ModelConfig,
    check_moved_keys,
    resolve_backbone_options,
    resolve_preference_options,
    resolve_sharing_options,
)
from mtlkit.config.overrides import _short_repr, balancer_options
from mtlkit.config.recipes import DEFAULT_BENCHMARK, with_benchmark_recipe
from mtlkit.config.training_sections import BalancerConfig, OptimConfig
from mtlkit.data import BENCHMARKS, DataError, benchmark_tasks
from mtlkit.data.tables import TARGETS
from mtlkit.models import ARCHITECTURES
from mtlkit.tasks import TASK_TYPES


def parse_config(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a raw mapping into an :class:`ExperimentConfig`, or raise :class:`ConfigError`."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"the config must be a mapping of keys to values, got {type(raw).__name__}."
        )
    check_moved_keys(raw.get("model"))
    config = _validated(ExperimentConfig, with_benchmark_recipe(raw), ())
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
        benchmark = DEFAULT_BENCHMARK if data.benchmark is None else data.benchmark
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
    config.model = ModelConfig(
        backbone=backbone,
        head_hidden=model.head_hidden,
        head_batch_norm=model.head_batch_norm,
        sharing=model.sharing,
        backbone_options=resolve_backbone_options(backbone, model.backbone_options),
        sharing_options=resolve_sharing_options(model.sharing, model.sharing_options),
        preference=model.preference,
        preference_options=resolve_preference_options(
            model.preference, model.preference_options, config.balancer.name
        ),
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
