"""Which balancing method is best for my tasks: every method × seed × tuned value, fairly.

``compare_methods`` trains a grid of run folders (:mod:`mtlkit.workflows.cells`): every method,
at every seed, at every value of the tuned settings (``optim.lr=0.1,0.03,0.01``), and the
single-task baselines (each task alone, plain weighting) at every seed and value, shared by all
methods. Then, per method:

* the tuned value is chosen by the **validation** score (the mean over seeds of the selected
  epoch's validation score, :attr:`Cell.val_score`); test metrics are never read for it, and
  each final run read its test split once, at its end. The single-task baseline of each task
  is tuned the same way;
* each task's test metric is reported as the mean over seeds ± the 95 % confidence interval
  (Student's t, n − 1 degrees of freedom, :func:`~mtlkit.evaluation.stats.mean_ci`);
* Δm% (Maninis et al. 2019) is computed per seed against the single-task baselines of that seed
  — the mean over tasks of the relative change of the test metric (over every metric of a
  per-pixel task: mIoU, pixel accuracy, depth errors, normal angles), its sign flipped for
  lower-is-better metrics, positive = multi-task better — and reported as mean ± CI;
* the mean rank is the method's rank on each task's mean test metric (1 = best, ties share the
  mean rank), averaged over tasks;
* the step time is the median seconds per training step over all the method's runs, divided by
  the same for ``ew`` (or the first method when ``ew`` is not compared): a ratio of runs on one
  machine, which may have been shared.
"""

from __future__ import annotations

import copy
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtlkit.config import ConfigError, ExperimentConfig, parse_config, set_value
from mtlkit.evaluation import Choice, choose_by_validation, compare_values, delta_m
from mtlkit.evaluation.stats import mean_ci, mean_ranks
from mtlkit.tasks import delta_m_metrics, higher_is_better
from mtlkit.training import DivergedError
from mtlkit.workflows.baselines import single_task_config
from mtlkit.workflows.cells import Cell, prepare_grid_dir
from mtlkit.workflows.comparison import (
    BaselineRow,
    MethodComparison,
    MethodRow,
    write_comparison,
)
from mtlkit.workflows.sweeps import JOURNAL, CellGrid, SweepCounts, SweepOptions

OUTPUTS = ("compare.csv", "compare.json", "report.md", "report.html", JOURNAL)
"""The files a compare folder holds besides its cells."""
_UNTUNABLE = ("name", "seed", "balancer.name", "tasks.include")

MethodSpec = str | Mapping[str, Any]
"""A method: its name (``"pcgrad"``), or a balancer section with options
(``{"name": "cagrad", "c": 0.2}``)."""


def method_label(method: MethodSpec) -> str:
    """``"cagrad"``, or ``"cagrad(c=0.2)"`` when options are given."""
    if isinstance(method, str):
        return method
    options = ", ".join(f"{key}={value}" for key, value in method.items() if key != "name")
    return f"{method['name']}({options})" if options else str(method["name"])


def tuning_grid(tune: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of the tuned values, in order (the first key varies slowest); one
    empty combination when nothing is tuned.

    Raises:
        ConfigError: a key that cannot be tuned, or a key without values.
    """
    tune = dict(tune or {})
    for key, values in tune.items():
        if key in _UNTUNABLE:
            raise ConfigError(
                f"--tune {key}: cannot be tuned (seeds: --seeds; methods: --methods); tune "
                "settings such as optim.lr or schedule.name."
            )
        if len(values) == 0:
            raise ConfigError(f"--tune {key}: give at least one value, e.g. {key}=0.1,0.01.")
    return [dict(zip(tune, combo)) for combo in itertools.product(*tune.values())]


def combo_label(combo: Mapping[str, Any]) -> str:
    """``"optim.lr=0.03"`` (several keys joined by ", "); ``"(as configured)"`` for none."""
    return ", ".join(f"{key}={value}" for key, value in combo.items()) or "(as configured)"


def _choice(cells: Sequence[Sequence[Cell]]) -> Choice:
    """The value chosen on validation among ``cells`` (per value, its cells over the seeds; a
    diverged cell scores −∞), :func:`~mtlkit.evaluation.choose_by_validation`."""
    return choose_by_validation([[cell.val_score for cell in seeds] for seeds in cells])


def _diverged_runs(cells: Sequence[Sequence[Cell]]) -> str:
    """The names of the diverged cells among ``cells``."""
    return ", ".join(str(cell.path.name) for seeds in cells for cell in seeds if cell.diverged)


def compare_methods(
    config: ExperimentConfig,
    out_dir: str | Path,
    methods: Sequence[MethodSpec],
    *,
    seeds: int | Sequence[int] = 3,
    tune: Mapping[str, Sequence[Any]] | None = None,
    confidence: float = 0.95,
    overwrite: bool = False,
    sweep: SweepOptions | None = None,
) -> MethodComparison:
    """Train (or resume) the grid and write the comparison into ``out_dir``.

    Args:
        config: the experiment; its ``balancer`` section is replaced by each method in turn.
        out_dir: the compare folder (cells in ``cells/``, then ``compare.csv``,
            ``compare.json``, ``report.md``, ``report.html``). Running again on the same folder
            trains only the cells not finished yet.
        methods: the methods to compare (names, or balancer sections with options).
        seeds: how many seeds (``config.seed``, ``config.seed + 1``, …) or the seeds.
        tune: settings to tune per method, each with its values (``{"optim.lr": [0.1, 0.01]}``).
        confidence: the level of the confidence intervals.
        overwrite: remove the folder's cells, study journal and outputs first.
        sweep: the study's storage and workers (:mod:`mtlkit.workflows.sweeps`); default: the
            journal file in ``out_dir``, one worker.

    A run that diverges finishes its cell as diverged; its value is then never chosen.

    Raises:
        ConfigError: no validation split, or a method, seed list or tuned value that makes an
            invalid configuration (checked for the whole grid before any training).
        DivergedError: a baseline diverged at every tuned value (nothing is written), or a
            method did (the others are compared and written first; its row says it diverged).
    """
    labels = [method_label(method) for method in methods]
    check_grid_config(config, labels)
    seeds_used = seed_list(config, seeds)
    combos = tuning_grid(tune)
    base = config.to_dict()
    grid = {
        label: [[cell_config(base, method, seed, combo) for seed in seeds_used] for combo in combos]
        for label, method in zip(labels, methods)
    }
    first = grid[labels[0]]
    tasks = first[0][0].task_names
    if len(tasks) < 2:
        raise ConfigError(f"tasks.include: a comparison needs 2 or more tasks, got {tasks}.")
    singles = {
        task: [[single_task_config(cfg, task) for cfg in per_seed] for per_seed in first]
        for task in tasks
    }
    out_dir = prepare_grid_dir(out_dir, OUTPUTS, overwrite=overwrite)
    entries = [
        (f"{name}-seed{cfg.seed}", cfg)
        for name, configs in [
            *((f"single-{task}", singles[task]) for task in tasks),
            *((label, grid[label]) for label in labels),
        ]
        for per_seed in configs
        for cfg in per_seed
    ]
    cells, counts = CellGrid(out_dir, entries, "compare", sweep or SweepOptions()).run()
    ordered = iter(cells)
    baseline_cells = {
        task: [[next(ordered) for _ in per_seed] for per_seed in singles[task]] for task in tasks
    }
    method_cells = {
        label: [[next(ordered) for _ in per_seed] for per_seed in grid[label]] for label in labels
    }

    result = summarise_grid(
        baseline_cells,
        method_cells,
        [combo_label(combo) for combo in combos],
        seeds_used,
        confidence,
        out_dir,
        counts,
    )
    write_comparison(result, config, [combo_label(combo) for combo in combos])
    raise_if_diverged(result, out_dir / "compare.csv")
    return result


def raise_if_diverged(result: MethodComparison, table: Path) -> None:
    """Raise after writing when a method diverged at every tuned value.

    Raises:
        DivergedError: naming the methods, their runs and ``table``, which holds the others.
    """
    if result.diverged:
        raise DivergedError(
            "; ".join(
                f"{label} diverged at every tuned value ({runs})"
                for label, runs in result.diverged.items()
            )
            + f"; tune smaller values, e.g. a lower optim.lr. The other methods are compared in "
            f"{table}, where its row says so."
        )


def summarise_grid(
    baseline_cells: Mapping[str, Sequence[Sequence[Cell]]],
    method_cells: Mapping[str, Sequence[Sequence[Cell]]],
    combo_names: Sequence[str],
    seeds: Sequence[int],
    confidence: float,
    out_dir: Path,
    counts: SweepCounts,
) -> MethodComparison:
    """The comparison of finished cells: per task (``baseline_cells``) and per method
    (``method_cells``), per tuned value (``combo_names``), its cells over ``seeds``. Each
    chooses its value on validation; the rows are its test metrics at that value.

    Raises:
        DivergedError: a baseline diverged at every tuned value.
    """
    tasks = list(baseline_cells)
    labels = list(method_cells)
    baselines, baseline_runs = {}, {}
    for task in tasks:
        choice = _choice(baseline_cells[task])
        if choice.index is None:
            raise DivergedError(
                f"the single-task baseline of {task} diverged at every tuned value "
                f"({_diverged_runs(baseline_cells[task])}); tune smaller values, e.g. a lower "
                "optim.lr."
            )
        baseline_runs[task] = baseline_cells[task][choice.index]
        baselines[task] = BaselineRow(
            task=task,
            chosen=combo_names[choice.index],
            test=mean_ci([cell.test_metric(task) for cell in baseline_runs[task]], confidence),
            val_scores=dict(zip(combo_names, choice.val_scores)),
        )
    choices = {label: _choice(method_cells[label]) for label in labels}
    diverged = {
        label: _diverged_runs(method_cells[label])
        for label in labels
        if choices[label].index is None
    }
    compared = [label for label in labels if label not in diverged]
    reference = "ew" if "ew" in compared else (compared or labels)[0]
    step_times = {
        label: statistics.median(
            cell.step_seconds for per in method_cells[label] for cell in per if not cell.diverged
        )
        for label in compared
    }
    rows = []
    for label in compared:
        choice = choices[label]
        runs = method_cells[label][choice.index]
        deltas = [_delta_m(run, [baseline_runs[t][i] for t in tasks]) for i, run in enumerate(runs)]
        rows.append(
            MethodRow(
                method=label,
                chosen=combo_names[choice.index],
                test={t: mean_ci([run.test_metric(t) for run in runs], confidence) for t in tasks},
                delta_m=mean_ci(deltas, confidence),
                mean_rank=math.nan,  # set below, once every method's means are known
                step_time=step_times[label] / step_times[reference],
                val_scores=dict(zip(combo_names, choice.val_scores)),
            )
        )
    directions = {task: baseline_runs[task][0].primary(task)[1] for task in tasks}
    means = {row.method: {task: ci.mean for task, ci in row.test.items()} for row in rows}
    ranks = mean_ranks(means, directions) if rows else {}
    result = MethodComparison(
        rows=[replace(row, mean_rank=ranks[row.method]) for row in rows],
        baselines=baselines,
        metrics={task: baseline_runs[task][0].primary(task)[0] for task in tasks},
        seeds=list(seeds),
        confidence=confidence,
        reference=reference,
        out_dir=out_dir,
        trained=sum(
            cell.trained
            for grid in (*baseline_cells.values(), *method_cells.values())
            for per in grid
            for cell in per
        ),
        counts=counts,
        diverged=diverged,
    )
    return result


def check_grid_config(config: ExperimentConfig, labels: Sequence[str]) -> None:
    """Refuse a comparison without a validation split or without distinct methods.

    Raises:
        ConfigError: naming the setting and the fix.
    """
    if config.data.val_fraction == 0:
        raise ConfigError(
            "data.val_fraction: a comparison chooses each method's tuned value on validation; "
            "set it above 0 (e.g. 0.1)."
        )
    if not labels or len(set(labels)) != len(labels):
        raise ConfigError(f"--methods: name one or more distinct methods, got {list(labels)}.")


def seed_list(config: ExperimentConfig, seeds: int | Sequence[int]) -> list[int]:
    """The seeds: ``config.seed, config.seed + 1, …`` (``seeds`` of them) or ``seeds``.

    Raises:
        ConfigError: fewer than one seed, or repeated or negative seeds.
    """
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"--seeds: give 1 or more seeds, got {seeds}.")
        return [config.seed + i for i in range(seeds)]
    values = [int(seed) for seed in seeds]
    if not values or len(set(values)) != len(values) or min(values) < 0:
        raise ConfigError(f"--seeds: give distinct seeds ≥ 0, got {list(seeds)}.")
    return values


def cell_config(
    base: Mapping[str, Any], method: MethodSpec, seed: int, combo: Mapping[str, Any]
) -> ExperimentConfig:
    """The configuration ``base`` (raw) with ``method`` as its balancer, at ``seed``, with the
    tuned ``combo`` set."""
    raw = copy.deepcopy(dict(base))
    raw["seed"] = seed
    raw["balancer"] = {"name": method} if isinstance(method, str) else dict(method)
    for key, value in combo.items():
        set_value(raw, key, value, f"--tune {key}")
    return parse_config(raw)


def _delta_m(run: Cell, baselines: Sequence[Cell]) -> float:
    """Δm% of ``run`` against each task's baseline, over each task's primary metric (every
    metric of a per-pixel task, :func:`~mtlkit.tasks.delta_m_metrics`)."""
    measures = {
        f"{task}/{metric}": (task, metric)
        for task in run.tasks
        for metric in delta_m_metrics(run.primary(task)[0])
    }
    base = dict(zip(run.tasks, baselines))
    rows = compare_values(
        {key: float(run.metrics["test"][t][m]) for key, (t, m) in measures.items()},
        {key: float(base[t].metrics["test"][t][m]) for key, (t, m) in measures.items()},
        {key: higher_is_better(m) for key, (_, m) in measures.items()},
    )
    return delta_m(rows)
