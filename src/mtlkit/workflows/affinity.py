"""Which of my tasks belong together: one training of the config, measured as it goes.

``measure_affinity`` trains the configuration (all its tasks, its balancer) in ``<out>/run`` and,
every ``every`` steps, measures TAG's inter-task affinity and the gradient cosines
(:class:`~mtlkit.evaluation.affinity.TaskAffinityProbe`); then it writes the K×K matrices, their
heat maps and the best grouping of the tasks into networks for each number of networks
(``affinity.json``, ``affinity.csv``, ``report.md``, ``report.html``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from mtlkit.config import ConfigError, ExperimentConfig
from mtlkit.evaluation.affinity import Grouping, best_groupings, suggested_grouping
from mtlkit.evaluation.document import Document, Figure, Heading, Paragraph, Table
from mtlkit.measure.affinity import TaskAffinityProbe
from mtlkit.workflows.cells import refuse_several_processes
from mtlkit.workflows.run_dir import prepare_run_dir, write_results
from mtlkit.workflows.train import train

OUTPUTS = ("affinity.json", "affinity.csv", "report.md", "report.html")
"""The files an affinity folder holds besides its ``run/`` folder."""


@dataclass
class AffinityResult:
    """The result of :func:`measure_affinity`.

    Attributes:
        tasks: the tasks, in matrix order.
        affinity: the mean inter-task affinity, ``affinity[i][j]`` = the effect of a step on
            task i on task j's loss (positive: i helps j).
        cosine: the mean cosine between the task gradients on the shared parameters.
        groupings: the best partition for each number of networks, 1 … K.
        suggested: the best partition of all.
        steps: the steps measured.
    """

    tasks: list[str]
    affinity: list[list[float]]
    cosine: list[list[float]]
    groupings: list[Grouping]
    suggested: Grouping
    steps: list[int]
    out_dir: Path


def measure_affinity(
    config: ExperimentConfig, out_dir: str | Path, *, every: int = 10, overwrite: bool = False
) -> AffinityResult:
    """Train ``config`` once in ``<out>/run``, measuring the task affinity every ``every`` steps.

    Raises:
        ConfigError: fewer than 2 tasks, or ``every`` < 1.
        FileExistsError: ``out_dir`` holds a finished affinity measurement and not ``overwrite``.
        LaunchError: started as several processes (its probe measures one process's steps).
    """
    refuse_several_processes("affinity")
    tasks = config.task_names
    if len(tasks) < 2:
        raise ConfigError(f"tasks.include: affinity needs 2 or more tasks, got {tasks}.")
    if every < 1:
        raise ConfigError(f"--every: measure every N ≥ 1 steps, got {every}.")
    out_dir = Path(out_dir)
    if (out_dir / "affinity.json").exists() and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds an affinity measurement (affinity.json); pass --overwrite "
            "to replace it, or choose another --out."
        )
    for name in OUTPUTS:
        (out_dir / name).unlink(missing_ok=True)
    probe = TaskAffinityProbe(tasks, every)
    train(config, prepare_run_dir(out_dir / "run", overwrite=True), probes=[probe])
    groupings = best_groupings(probe.mean_affinity(), tasks)
    result = AffinityResult(
        tasks=tasks,
        affinity=probe.mean_affinity(),
        cosine=probe.mean_cosine(),
        groupings=groupings,
        suggested=suggested_grouping(groupings),
        steps=list(probe.steps),
        out_dir=out_dir,
    )
    _write_outputs(result, probe, config)
    return result


def _write_outputs(
    result: AffinityResult, probe: TaskAffinityProbe, config: ExperimentConfig
) -> None:
    rows = [
        [measure, task, *row]
        for measure, matrix in (("affinity", result.affinity), ("cosine", result.cosine))
        for task, row in zip(result.tasks, matrix)
    ]
    header = ["measure", "from_task", *result.tasks]
    summary = {
        "config": config.to_dict(),
        "tasks": result.tasks,
        "affinity": result.affinity,
        "cosine": result.cosine,
        "groupings": [asdict(grouping) for grouping in result.groupings],
        "suggested": asdict(result.suggested),
        "steps": probe.steps,
        "per_step": {"affinity": probe.affinities, "cosine": probe.cosines},
    }
    write_results(result.out_dir, "affinity", (header, rows), summary, _document(result, config))


def _document(result: AffinityResult, config: ExperimentConfig) -> Document:
    from mtlkit.evaluation.plots import heatmap_png

    tasks = result.tasks

    def heatmap(matrix: list[list[float]], labels: tuple[str, str, str], caption: str) -> Figure:
        title, rows, columns = labels
        png = heatmap_png(matrix, tasks, title=title, row_label=rows, column_label=columns)
        return Figure(png, caption)

    def matrix_table(matrix: list[list[float]], corner: str) -> Table:
        return Table(
            [corner, *tasks], [[t, *(f"{v:+.4f}" for v in row)] for t, row in zip(tasks, matrix)]
        )

    groups = " | ".join("{" + ", ".join(group) + "}" for group in result.suggested.groups)
    steps = result.steps
    document = Document(f"mtlkit affinity: {config.name}")
    document.add(
        Heading("Suggested grouping"),
        Paragraph(
            f"**{groups}** — {len(result.suggested.groups)} network(s), total affinity score "
            f"{result.suggested.score:+.4f}. The score of a grouping is the mean over tasks of "
            "the mean affinity onto the task from the other members of its group (0 alone); "
            "every partition was searched (TAG's network selection, Fifty et al. 2021)."
        ),
        Table(
            ["networks", "best grouping", "score"],
            [
                [
                    str(len(grouping.groups)),
                    " | ".join("{" + ", ".join(group) + "}" for group in grouping.groups),
                    f"{grouping.score:+.4f}",
                ]
                for grouping in result.groupings
            ],
            2,
        ),
        Heading("Inter-task affinity (TAG)"),
        Paragraph(
            "Row i, column j: the mean over the measured steps of 1 − L_j(after a look-ahead SGD "
            "step on task i's gradient alone, at the optimizer's learning rate) / L_j(before), "
            f"on the step's batch. Positive: a step for i lowers j's loss. Measured on "
            f"{len(steps)} steps ({steps[0]}…{steps[-1]}) of one training ({config.balancer.name}, "
            f"{config.train.epochs} epochs; the run is in `run/`)."
        ),
        heatmap(
            result.affinity,
            ("inter-task affinity Z(i → j)", "step on task i", "loss of task j"),
            "inter-task affinity: rows the task stepped on, columns the task whose loss changes",
        ),
        matrix_table(result.affinity, "step on \\ loss of"),
        Heading("Gradient cosine"),
        Paragraph(
            "The mean over the same steps of cos(∇Lᵢ, ∇Lⱼ) on the shared parameters; negative: "
            "the tasks' gradients conflict."
        ),
        heatmap(
            result.cosine,
            ("task-gradient cosine", "task i", "task j"),
            "mean cosine between the task gradients on the shared parameters",
        ),
        matrix_table(result.cosine, "task"),
    )
    return document
