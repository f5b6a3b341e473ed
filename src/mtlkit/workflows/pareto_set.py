"""The front of a preference-conditioned run (``model.preference``): one trained network
evaluated on R test rays, its hypervolume, and its plot beside a sweep's points.

``mtlkit pareto RUN_DIR`` (a run folder instead of a config) calls :func:`pareto_set_front`:
the rays are the Das–Dennis design on the simplex with the most points not above ``rays``
(25 by default: for two tasks λ = 0, 1/24, …, 1), each served by
:meth:`~mtlkit.models.PreferenceModel.set_preference`; the measure is the literature's, the
hypervolume of the test-set loss points (cross-entropy for classification) at a reference of 2
per task, next to the front of the test metrics. With ``sweep``, the plot also shows the points
and the single-task point of a ``mtlkit pareto`` sweep folder (its ``pareto.json``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mtlkit.config import ConfigError
from mtlkit.evaluation.document import Document, Figure, Heading, Paragraph, Table
from mtlkit.evaluation.pareto import das_dennis, hypervolume, lattice_divisions, pareto_front
from mtlkit.measure.evaluation_pass import evaluate_with_losses
from mtlkit.models import PreferenceModel
from mtlkit.workflows.build import build_views, eval_batches, load_data
from mtlkit.workflows.restore import restore_run
from mtlkit.workflows.run_dir import write_results

__all__ = ["RayPoint", "SetFront", "pareto_set_front", "test_rays"]

DEFAULT_RAYS = 25
"""The test rays of a front, as in COSMOS's and PHN's evaluations."""


@dataclass(frozen=True)
class RayPoint:
    """The run served at one preference: its test metric and test loss per task."""

    preference: tuple[float, ...]
    metrics: dict[str, float]
    losses: dict[str, float]
    on_metric_front: bool
    on_loss_front: bool


@dataclass
class SetFront:
    """The result of :func:`pareto_set_front`.

    Attributes:
        points: one per ray.
        reference: the hypervolume's reference point (test loss per task).
        hypervolume: of the rays' test-loss points.
        out_dir: where ``pareto-set.csv``, ``pareto-set.json`` and the report were written.
        tasks: the task names, in the preferences' order.
        family: the run's ``model.preference``.
        protocol: the test data: benchmark (protocol), number of test samples.
    """

    points: list[RayPoint]
    reference: tuple[float, ...]
    hypervolume: float
    out_dir: Path
    tasks: list[str]
    family: str
    protocol: str


def test_rays(num_tasks: int, rays: int = DEFAULT_RAYS) -> list[tuple[float, ...]]:
    """The Das–Dennis preferences with the most points not above ``rays`` (for two tasks,
    exactly ``rays`` evenly spaced λ).

    Raises:
        ConfigError: fewer rays than tasks.
    """
    if rays < num_tasks:
        raise ConfigError(f"--rays {rays}: give at least one ray per task ({num_tasks}).")
    return das_dennis(num_tasks, lattice_divisions(num_tasks, rays))


def pareto_set_front(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    rays: int = DEFAULT_RAYS,
    reference: Sequence[float] | None = None,
    sweep: str | Path | None = None,
    device: str = "auto",
) -> SetFront:
    """Evaluate the preference-conditioned run in ``run_dir`` on the test split at ``rays``
    preferences and write the front (default folder ``RUN_DIR/pareto-set``).

    Raises:
        ConfigError: not a run folder, a run without ``model.preference``, a reference of the
            wrong length, or a ``sweep`` folder without ``pareto.json``.
    """
    run = restore_run(run_dir, device)
    if not isinstance(run.model, PreferenceModel):
        raise ConfigError(
            f"{run_dir}: this run has no preference-conditioned model (model.preference); "
            "give mtlkit pareto a config to sweep instead."
        )
    names = run.model.task_names
    ref = tuple(float(v) for v in (reference or [2.0] * len(names)))
    if len(ref) != len(names):
        raise ConfigError(f"--reference: give one value per task ({len(names)}), got {len(ref)}.")
    swept = _read_sweep(Path(sweep)) if sweep is not None else None
    data = load_data(run.config)
    views = build_views(run.config)
    measured = []
    for preference in test_rays(len(names), rays):
        run.model.set_preference(preference)
        reports, losses = evaluate_with_losses(
            run.model,
            run.tasks,
            eval_batches(run.config, data.test),
            run.device,
            run.memory_format,
            views,
        )
        metrics = {t.name: float(getattr(reports[t.name], t.primary_metric)) for t in run.tasks}
        measured.append((preference, metrics, losses))
    signs = {t.name: 1.0 if t.higher_is_better else -1.0 for t in run.tasks}
    loss_front = set(pareto_front([[m[2][n] for n in names] for m in measured]))
    metric_front = set(pareto_front([[-signs[n] * m[1][n] for n in names] for m in measured]))
    points = [
        RayPoint(tuple(p), metrics, losses, i in metric_front, i in loss_front)
        for i, (p, metrics, losses) in enumerate(measured)
    ]
    volume = hypervolume([[p.losses[n] for n in names] for p in points], ref)
    result = SetFront(
        points,
        ref,
        volume,
        Path(out) if out else Path(run_dir) / "pareto-set",
        list(names),
        str(run.config.model.preference),
        f"{data.name} ({data.protocol}), {len(data.test)} test samples",
    )
    result.out_dir.mkdir(parents=True, exist_ok=True)
    _write(result, run.config.name, swept)
    return result


def _read_sweep(folder: Path) -> dict:
    path = folder / "pareto.json"
    if not path.is_file():
        raise ConfigError(f"--sweep {folder}: no pareto.json there; give a mtlkit pareto folder.")
    return json.loads(path.read_text())


def _write(result: SetFront, name: str, sweep: dict | None) -> None:
    tasks = result.tasks
    header = [
        "preference",
        *(f"{t} metric" for t in tasks),
        *(f"{t} loss" for t in tasks),
        "front (metrics)",
        "front (losses)",
    ]
    rows = [
        [
            " ".join(f"{v:.4f}" for v in p.preference),
            *(p.metrics[t] for t in tasks),
            *(p.losses[t] for t in tasks),
            p.on_metric_front,
            p.on_loss_front,
        ]
        for p in result.points
    ]
    summary = {
        "reference": result.reference,
        "hypervolume": result.hypervolume,
        "protocol": result.protocol,
        "points": [asdict(p) for p in result.points],
    }
    write_results(
        result.out_dir,
        "pareto-set",
        (header, rows),
        summary,
        _document(result, name, sweep),
    )


def _document(result: SetFront, name: str, sweep: dict | None) -> Document:
    from mtlkit.evaluation.plots import tradeoff_png

    tasks, family = result.tasks, result.family

    groups: dict[str, list[list[float]]] = {
        f"{family} rays": [[p.losses[t] for t in tasks] for p in result.points]
    }
    singles: dict[str, list[float]] = {}
    if sweep is not None:
        for point in sweep["points"]:
            groups.setdefault(f"sweep: {point['method']}", []).append(
                [point["losses"][t] for t in tasks]
            )
        single = sweep.get("single_task", {})
        if all(t in single for t in tasks):
            singles["single-task"] = [single[t]["losses"][t] for t in tasks]
    reference = ", ".join(f"{v:g}" for v in result.reference)
    document = Document(f"mtlkit pareto (set learning): {name}")
    document.add(
        Heading("Front"),
        Paragraph(
            f"**Hypervolume of the {len(result.points)} rays' test losses: "
            f"{result.hypervolume:.4f}** at reference ({reference}); one {family} network, "
            f"served at each ray, on {result.protocol}. Higher is better."
        ),
        Figure(
            tradeoff_png(
                groups,
                [[p.losses[t] for t in tasks] for p in result.points if p.on_loss_front],
                singles,
                [f"{t} test loss" for t in tasks],
                title="test losses (lower is better)",
            ),
            "the rays' test losses, their non-dominated front, and any sweep's points",
        ),
        Table(
            ["preference", *(f"{t} metric" for t in tasks), *(f"{t} loss" for t in tasks)],
            [
                [
                    " ".join(f"{v:.3f}" for v in p.preference),
                    *(f"{p.metrics[t]:.4f}" for t in tasks),
                    *(f"{p.losses[t]:.4f}" for t in tasks),
                ]
                for p in result.points
            ],
        ),
    )
    return document
