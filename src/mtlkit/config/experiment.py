"""The whole experiment (every section, and the head ensembles) and the ``finetune:`` plan."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mtlkit.config.data_sections import DataConfig, TaskConfig
from mtlkit.config.model_sections import ModelConfig
from mtlkit.config.section import _Section
from mtlkit.config.training_sections import (
    BalancerConfig,
    EvalConfig,
    NoiseConfig,
    OptimConfig,
    RegularizationConfig,
    ScheduleConfig,
    TrainConfig,
)
from mtlkit.data import benchmark_tasks


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
