"""What trading one task for another costs: the trade-off swept, its front and hypervolume.

``pareto_sweep`` trains one run per preference vector and method, beside the single-task runs:

* the preference vectors are the Das–Dennis design on the simplex with the most points not
  above ``points`` (:func:`~mtlkit.evaluation.pareto.das_dennis`); for two tasks and 11 points
  that is λ = 0, 0.1, …, 1 (task 1 weighted λ, task 2 1 − λ);
* each vector is handed to a preference-aware method through its own option: ``fixed``
  (``weights``), ``stch`` (``preferences``; vectors with a zero are skipped, as STCH needs
  positive preferences), ``upgrad`` and ``dualproj`` (``pref_vector``);
* the points are the runs' test metrics and test losses; the non-dominated front is reported in
  both spaces, and the hypervolume of the test-loss points with a stated reference point
  (default 2 per task, on cross-entropy, as COSMOS, Ruchte & Grabocka 2021, uses).

Every run is a cell of :mod:`mtlkit.workflows.cells`, run as a trial of an Optuna study
(:mod:`mtlkit.workflows.sweeps`: several workers, processes or machines), so an interrupted
sweep resumes, and a sweep in a compare folder reuses the single-task runs already there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mtlkit.config import ConfigError, ExperimentConfig, parse_config
from mtlkit.evaluation.document import Document, Figure, Heading, Paragraph, Table
from mtlkit.evaluation.pareto import das_dennis, hypervolume, lattice_divisions, pareto_front
from mtlkit.training import DivergedError
from mtlkit.workflows.baselines import single_task_config
from mtlkit.workflows.cells import Cell, prepare_grid_dir
from mtlkit.workflows.compare import MethodSpec, method_label
from mtlkit.workflows.run_dir import write_results
from mtlkit.workflows.sweeps import JOURNAL, CellGrid, SweepOptions

OUTPUTS = ("pareto.csv", "pareto.json", "report.md", "report.html", JOURNAL)
"""The files a Pareto folder holds besides its cells."""
PREFERENCE_OPTIONS: Mapping[str, str] = {
    "fixed": "weights",
    "stch": "preferences",
    "upgrad": "pref_vector",
    "dualproj": "pref_vector",
}
"""The preference-aware methods and the option each takes its preference vector by."""
_POSITIVE_ONLY = frozenset({"stch"})
DEFAULT_REFERENCE = 2.0
"""The default hypervolume reference value per task (on test cross-entropy, as COSMOS)."""


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep: its method and preference (None: a single-task run), its test
    metric and test loss per task, and whether it is on the front of each space."""

    label: str
    method: str | None
    preference: tuple[float, ...] | None
    metrics: dict[str, float]
    losses: dict[str, float]
    on_metric_front: bool
    on_loss_front: bool
    run_dir: str


@dataclass
class ParetoResult:
    """The result of :func:`pareto_sweep`.

    Attributes:
        points: the sweep's runs (the single-task runs are in :attr:`single_task`).
        single_task: per task, its single-task run's point.
        metric_names: per task, its primary metric and whether higher is better.
        reference: the hypervolume's reference point (test loss per task).
        hypervolume: of every sweep point's test losses.
        method_hypervolumes: per method, of its own points.
        single_task_hypervolume: of the point made of each task's single-task test loss.
    """

    points: list[SweepPoint]
    single_task: dict[str, SweepPoint]
    metric_names: dict[str, tuple[str, bool]]
    reference: tuple[float, ...]
    hypervolume: float
    method_hypervolumes: dict[str, float]
    single_task_hypervolume: float
    out_dir: Path
    trained: int


def pareto_sweep(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    points: int = 11,
    methods: Sequence[MethodSpec] = ("fixed",),
    reference: Sequence[float] | None = None,
    overwrite: bool = False,
    sweep: SweepOptions | None = None,
) -> ParetoResult:
    """Train (or resume) the sweep and write its fronts, hypervolume and plot into ``out_dir``.

    Args:
        config: the experiment; its ``balancer`` section is replaced by each method.
        out_dir: the sweep's folder (cells in ``cells/``, then ``pareto.csv``,
            ``pareto.json``, ``report.md``, ``report.html``).
        points: the most preference vectors per method (Das–Dennis; 11 for two tasks gives
            λ = 0, 0.1, …, 1).
        methods: preference-aware methods (see :data:`PREFERENCE_OPTIONS`), with options.
        reference: the hypervolume reference point on the test losses (default 2 per task).
        overwrite: remove the folder's cells, study journal and outputs first.
        sweep: the study's storage and workers (:mod:`mtlkit.workflows.sweeps`); default: the
            journal file in ``out_dir``, one worker.

    Raises:
        ConfigError: fewer than 2 tasks, a method that takes no preference, a bad reference or
            number of points, or an invalid configuration.
        DivergedError: a run diverged (its cell is kept as diverged: lower the learning rate).
    """
    tasks = config.task_names
    if len(tasks) < 2:
        raise ConfigError(f"tasks.include: a trade-off needs 2 or more tasks, got {tasks}.")
    if points < len(tasks):
        raise ConfigError(f"--points: give at least {len(tasks)} (one per task), got {points}.")
    ref = tuple(float(v) for v in (reference or [DEFAULT_REFERENCE] * len(tasks)))
    if len(ref) != len(tasks):
        raise ConfigError(f"--reference: give one value per task ({len(tasks)}), got {list(ref)}.")
    preferences = das_dennis(len(tasks), lattice_divisions(len(tasks), points))
    runs = [
        (method_label(method), method, preference, _preference_config(config, method, preference))
        for method in methods
        for preference in preferences
        if _name(method) not in _POSITIVE_ONLY or min(preference) > 0
    ]
    out_dir = prepare_grid_dir(out_dir, OUTPUTS, overwrite=overwrite)
    labelled = [
        *((f"single-task {task}", None, None) for task in tasks),
        *(
            (f"{label} {_format(preference)}", label, preference)
            for label, _, preference, _ in runs
        ),
    ]
    entries = [
        *((f"single-{task}-seed{config.seed}", single_task_config(config, task)) for task in tasks),
        *(
            (f"{label}-w{'-'.join(f'{v:g}' for v in preference)}-seed{config.seed}", cfg)
            for label, _, preference, cfg in runs
        ),
    ]
    finished, counts = CellGrid(out_dir, entries, "pareto", sweep or SweepOptions()).run()
    cells = [(*names, cell) for names, cell in zip(labelled, finished)]
    trained = sum(cell.trained for cell in finished)
    for *_, cell in cells:
        print(f"[pareto] {cell.path.name}: {'trained' if cell.trained else 'finished before'}")
    diverged = [cell.path.name for *_, cell in cells if cell.diverged]
    if diverged:
        raise DivergedError(
            f"runs of the sweep diverged ({', '.join(diverged)}); lower optim.lr and run it again "
            "(the finished runs are kept)."
        )

    single_cells = {task: cells[i][3] for i, task in enumerate(tasks)}
    metric_names = {task: single_cells[task].primary(task) for task in tasks}
    sweep = cells[len(tasks) :]
    metric_rows = [_minimised(cell, tasks) for *_, cell in sweep]
    loss_rows = [[cell.test_loss(task) for task in tasks] for *_, cell in sweep]
    metric_front, loss_front = set(pareto_front(metric_rows)), set(pareto_front(loss_rows))
    result_points = [
        _point(label, method, preference, cell, tasks, i in metric_front, i in loss_front)
        for i, (label, method, preference, cell) in enumerate(sweep)
    ]
    single = {
        task: _point(f"single-task {task}", None, None, cell, [task], False, False)
        for task, cell in single_cells.items()
    }
    by_method: dict[str, list[list[float]]] = {}
    for (_, method, _, _), losses in zip(sweep, loss_rows):
        by_method.setdefault(str(method), []).append(losses)
    result = ParetoResult(
        points=result_points,
        single_task=single,
        metric_names=metric_names,
        reference=ref,
        hypervolume=hypervolume(loss_rows, ref),
        method_hypervolumes={m: hypervolume(rows, ref) for m, rows in by_method.items()},
        single_task_hypervolume=hypervolume([[single[t].losses[t] for t in tasks]], ref),
        out_dir=out_dir,
        trained=trained,
    )
    _write_outputs(result, config, tasks)
    return result


def _name(method: MethodSpec) -> str:
    return method if isinstance(method, str) else str(method["name"])


def _format(preference: Sequence[float]) -> str:
    return "(" + ", ".join(f"{value:.3g}" for value in preference) + ")"


def _preference_config(
    config: ExperimentConfig, method: MethodSpec, preference: Sequence[float]
) -> ExperimentConfig:
    name = _name(method)
    if name not in PREFERENCE_OPTIONS:
        raise ConfigError(
            f"--methods: {name} takes no preference vector; use some of "
            f"{', '.join(PREFERENCE_OPTIONS)}."
        )
    section = {"name": name} if isinstance(method, str) else dict(method)
    section[PREFERENCE_OPTIONS[name]] = list(preference)
    warmup = section.get("warmup_epochs", 5)
    if name == "stch" and warmup >= config.train.epochs:
        raise ConfigError(
            f"--methods stch: its {warmup} warm-up epochs cover all {config.train.epochs} "
            "training epochs, so the preferences would never act; pass stch:warmup_epochs=N "
            "with N < train.epochs."
        )
    raw = config.to_dict()
    raw["balancer"] = section
    return parse_config(raw)


def _minimised(cell: Cell, tasks: Sequence[str]) -> list[float]:
    """The test metrics, negated where higher is better, so that lower is better in all."""
    return [cell.test_metric(t) * (-1.0 if cell.primary(t)[1] else 1.0) for t in tasks]


def _point(
    label: str,
    method: str | None,
    preference: tuple[float, ...] | None,
    cell: Cell,
    tasks: Sequence[str],
    on_metric_front: bool,
    on_loss_front: bool,
) -> SweepPoint:
    return SweepPoint(
        label=label,
        method=method,
        preference=preference,
        metrics={task: cell.test_metric(task) for task in tasks},
        losses={task: cell.test_loss(task) for task in tasks},
        on_metric_front=on_metric_front,
        on_loss_front=on_loss_front,
        run_dir=str(cell.path),
    )


def _write_outputs(result: ParetoResult, config: ExperimentConfig, tasks: list[str]) -> None:
    header = [
        "label",
        "method",
        *(f"preference_{task}" for task in tasks),
        *(f"{task}_{result.metric_names[task][0]}" for task in tasks),
        *(f"{task}_loss" for task in tasks),
        "on_metric_front",
        "on_loss_front",
    ]
    rows = [
        [
            point.label,
            point.method,
            *(point.preference or ()),
            *(point.metrics[t] for t in tasks),
            *(point.losses[t] for t in tasks),
            point.on_metric_front,
            point.on_loss_front,
        ]
        for point in result.points
    ]
    summary = {
        "config": config.to_dict(),
        "reference": result.reference,
        "hypervolume": result.hypervolume,
        "method_hypervolumes": result.method_hypervolumes,
        "single_task_hypervolume": result.single_task_hypervolume,
        "points": [asdict(point) for point in result.points],
        "single_task": {task: asdict(point) for task, point in result.single_task.items()},
    }
    write_results(
        result.out_dir, "pareto", (header, rows), summary, _document(result, config, tasks)
    )


def _document(result: ParetoResult, config: ExperimentConfig, tasks: list[str]) -> Document:
    from mtlkit.evaluation.plots import tradeoff_png

    reference = ", ".join(f"{value:g}" for value in result.reference)
    metric_label = {t: f"{t} test {result.metric_names[t][0]}" for t in tasks}
    groups_metric: dict[str, list[list[float]]] = {}
    groups_loss: dict[str, list[list[float]]] = {}
    for point in result.points:
        groups_metric.setdefault(str(point.method), []).append([point.metrics[t] for t in tasks])
        groups_loss.setdefault(str(point.method), []).append([point.losses[t] for t in tasks])
    single_metric = [result.single_task[t].metrics[t] for t in tasks]
    single_loss = [result.single_task[t].losses[t] for t in tasks]
    metric_front = [[p.metrics[t] for t in tasks] for p in result.points if p.on_metric_front]
    loss_front = [[p.losses[t] for t in tasks] for p in result.points if p.on_loss_front]
    rows = [
        [
            point.label,
            *(f"{point.metrics[t]:.4f}" for t in tasks),
            *(f"{point.losses[t]:.4f}" for t in tasks),
            "yes" if point.on_metric_front else "",
            "yes" if point.on_loss_front else "",
        ]
        for point in [*result.points, *_single_rows(result, tasks)]
    ]
    per_method = "; ".join(f"{m}: {hv:.4f}" for m, hv in result.method_hypervolumes.items())
    document = Document(f"mtlkit pareto: {config.name}")
    document.add(
        Heading("Trade-off"),
        Paragraph(
            f"**Hypervolume of the test-loss points: {result.hypervolume:.4f}** with reference "
            f"point ({reference}) on the test losses (the COSMOS convention: 2 per task on "
            f"cross-entropy); per method: {per_method}. The single-task point (each task's own "
            f"network) has {result.single_task_hypervolume:.4f}. Higher is better; a point "
            "outside the reference box adds nothing."
        ),
        Figure(
            tradeoff_png(
                groups_metric,
                metric_front,
                {"single-task": single_metric},
                [metric_label[t] for t in tasks],
                title="test metrics (higher is better)",
            ),
            "every run's test metrics, the non-dominated front, and the single-task point",
        ),
        Figure(
            tradeoff_png(
                groups_loss,
                loss_front,
                {"single-task": single_loss},
                [f"{t} test loss" for t in tasks],
                title="test losses (lower is better)",
            ),
            "every run's test losses, the non-dominated front, and the single-task point",
        ),
        Heading("Points"),
        Paragraph(
            "Preference vectors: the Das–Dennis simplex lattice (task order "
            f"{', '.join(tasks)}). The single-task row of a task shows its own network only."
        ),
        Table(
            [
                "run",
                *(metric_label[t] for t in tasks),
                *(f"{t} test loss" for t in tasks),
                "front (metrics)",
                "front (losses)",
            ],
            rows,
        ),
    )
    return document


def _single_rows(result: ParetoResult, tasks: list[str]) -> list[SweepPoint]:
    """The single-task runs as table rows (NaN for the tasks a run does not have)."""
    nan = float("nan")
    return [
        SweepPoint(
            label=point.label,
            method=None,
            preference=None,
            metrics={t: point.metrics.get(t, nan) for t in tasks},
            losses={t: point.losses.get(t, nan) for t in tasks},
            on_metric_front=False,
            on_loss_front=False,
            run_dir=point.run_dir,
        )
        for point in result.single_task.values()
    ]
