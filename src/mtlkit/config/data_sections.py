"""The ``data`` and ``tasks`` sections: where the data comes from, and the tasks trained on it.

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

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from mtlkit.config.section import _one_of, _Section
from mtlkit.data import BENCHMARKS, MIXINGS
from mtlkit.data.tables import MAX_CATEGORIES
from mtlkit.tasks import TASK_TYPES

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
