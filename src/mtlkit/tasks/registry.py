"""Task types by name: what the configuration's ``tasks.<name>.type`` chooses from.

Each type module registers one :class:`TaskType` (``TASK_TYPES.register("binary", ...)``) beside
its task class; :func:`create_task` builds a task from a :class:`~mtlkit.data.TaskSpec`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mtlkit.data.types import TaskSpec
from mtlkit.registry import Registry, UnknownNameError
from mtlkit.tasks.base import Task


@dataclass(frozen=True)
class TaskType:
    """A registered task type.

    Attributes:
        description: one line for the documentation and error messages.
        losses: the losses it can be trained with; the first is the default.
        metrics: the metrics its report holds that can serve as the primary metric (model
            selection, comparisons); the first is the default.
        options: the further options its tasks take (e.g. ``label_smoothing``), with defaults.
        build: ``build(spec, primary_metric, **options)`` -> the task.
        delta_m_all: whether Δm% averages all of ``metrics`` for its tasks (the per-pixel
            types, as the NYUv2 literature reports them), not the primary metric alone.
    """

    description: str
    losses: tuple[str, ...]
    metrics: tuple[str, ...]
    options: dict[str, Any]
    build: Callable[..., Task]
    delta_m_all: bool = False


TASK_TYPES: Registry[TaskType] = Registry("task type")
"""Task type name -> :class:`TaskType`."""


def create_task(spec: TaskSpec, *, metric: str | None = None, **options: Any) -> Task:
    """The task ``spec`` describes, scored by ``metric`` (default: its type's first metric).

    Args:
        spec: the task's name, type, classes or labels, loss and target scale.
        metric: the primary metric, one of the type's ``metrics``.
        **options: options of the type (e.g. ``label_smoothing`` for classification).

    Raises:
        ValueError: an unknown type, loss, metric or option.
    """
    try:
        kind = TASK_TYPES.get(spec.type)
    except UnknownNameError as error:
        raise ValueError(f"task {spec.name!r}: {error}") from None
    if spec.loss is not None and spec.loss not in kind.losses:
        raise ValueError(
            f"task {spec.name!r}: a {spec.type} task has no loss {spec.loss!r}; choose one of: "
            f"{', '.join(kind.losses)}."
        )
    if metric is not None and metric not in kind.metrics:
        raise ValueError(
            f"task {spec.name!r}: a {spec.type} task has no metric {metric!r}; choose one of: "
            f"{', '.join(kind.metrics)}."
        )
    unknown = [name for name in options if name not in kind.options]
    if unknown:
        allowed = ", ".join(kind.options) or "none"
        raise ValueError(
            f"task {spec.name!r}: a {spec.type} task takes no option {unknown[0]!r}; its "
            f"options: {allowed}."
        )
    return kind.build(spec, metric or kind.metrics[0], **options)


def delta_m_metrics(primary_metric: str) -> tuple[str, ...]:
    """The metrics that Δm% averages for a task scored by ``primary_metric``: every metric of
    its type when the type says so (``delta_m_all``: segmentation, depth, normals), else the
    primary metric alone."""
    for name in TASK_TYPES:
        kind = TASK_TYPES.get(name)
        if kind.delta_m_all and primary_metric in kind.metrics:
            return kind.metrics
    return (primary_metric,)
