"""Which method, fairly tuned: a search per method, early stopping, the winner over seeds.

``tune_methods`` runs one Optuna study per method and per single-task baseline (each task
alone, plain weighting), all in the output folder's storage (:mod:`mtlkit.workflows.sweeps`):

* each trial trains one run folder (a cell of :mod:`mtlkit.workflows.cells`) at the first seed
  with the values the sampler chose (TPE; the full grid when every ``--param`` is a list), and
  scores it on **validation** (the selected epoch's score); test metrics are never read for it;
* the pruner (median, Hyperband, or none) sees every epoch's validation score through a hook of
  the training loop (:class:`~mtlkit.workflows.pruning.PruningHook`) and stops trials that are
  clearly behind; a pruned trial is reported as such and never counted as a result;
* each study runs until ``trials`` of its trials completed or were pruned (failed ones, e.g. a
  killed worker's, do not count), on ``workers`` processes and any other process or machine
  that runs the same command on the same storage;
* the best trial of each study is retrained over ``seeds`` (its first-seed run is reused) and
  compared exactly as ``compare`` does (:func:`~mtlkit.workflows.compare.summarise_grid`): test
  metrics with CIs, Δm% against the tuned single-task baselines, mean rank, step time.

The report adds, per study, the trials complete, pruned and failed, the trial-epochs run against
the ``trials × epochs`` a search without pruning would run, each tuned value and a warning when
it sits on the boundary of its range, and Optuna's optimization-history and parameter-importance
plots.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtlkit.config import ConfigError, ExperimentConfig, parse_config, set_value
from mtlkit.evaluation import choose_by_validation
from mtlkit.workflows.baselines import single_task_config
from mtlkit.workflows.cells import prepare_grid_dir, run_cell
from mtlkit.workflows.compare import (
    OUTPUTS as COMPARE_OUTPUTS,
)
from mtlkit.workflows.compare import (
    MethodSpec,
    cell_config,
    check_grid_config,
    method_label,
    raise_if_diverged,
    seed_list,
    summarise_grid,
)
from mtlkit.workflows.comparison import MethodComparison, write_comparison
from mtlkit.workflows.pruning import PruningHook
from mtlkit.workflows.sweeps import (
    CellGrid,
    SweepCounts,
    SweepOptions,
    count_trials,
    fail_stale_trials,
    grid_study_name,
    heartbeat,
    intra_op_threads,
    open_storage,
    run_workers,
    work_on_queue,
)
from mtlkit.workflows.tune_report import StudyReport, tuning_blocks
from mtlkit.workflows.tune_space import Param, grid_size, is_grid, sample_values

OUTPUTS = ("tune.csv", "tune.json", *COMPARE_OUTPUTS[2:])
"""The files a tune folder holds besides its cells."""
PRUNERS = ("median", "hyperband", "none")
"""The pruners ``--pruner`` may name."""


@dataclass
class TuneResult:
    """The result of :func:`tune_methods`: the comparison of the winners and each search."""

    comparison: MethodComparison
    studies: list[StudyReport]


@dataclass(frozen=True)
class _Search:
    """What every worker needs to run the studies (picklable, for spawned processes)."""

    root: Path
    subjects: tuple[tuple[str, ExperimentConfig], ...]
    params: tuple[Param, ...]
    trials: int
    pruner: str
    options: SweepOptions
    tag: str

    def study_name(self, subject: str, config: ExperimentConfig) -> str:
        return grid_study_name(f"tune-{subject}-{self.tag}", [config])

    def load(self, subject: str, config: ExperimentConfig) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # A grid's points are enqueued (see enqueue_grid): the sampler is never asked for them.
        sampler = optuna.samplers.TPESampler(seed=config.seed)
        return optuna.create_study(
            study_name=self.study_name(subject, config),
            storage=open_storage(self.root, self.options.storage),
            direction="maximize",
            sampler=sampler,
            pruner=create_pruner(self.pruner, config.train.epochs),
            load_if_exists=True,
        )


def create_pruner(name: str, epochs: int) -> Any:
    """The Optuna pruner ``name`` (``median``, ``hyperband``, ``none``) for trials of ``epochs``
    epochs, each epoch one reported step. Neither prunes within the first quarter of the epochs
    (``epochs // 4``; from the first epoch on for runs of under 8): a small learning rate leaves
    chance level slowly and often ends best under a decaying schedule, so an early verdict is
    biased against it. ``median`` also waits for 2 complete trials."""
    import optuna

    warmup = epochs // 4
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource=epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; choose one of: median, hyperband, none.")


def tune_methods(
    config: ExperimentConfig,
    out_dir: str | Path,
    methods: Sequence[MethodSpec],
    params: Sequence[Param],
    *,
    trials: int | None = None,
    seeds: int | Sequence[int] = 3,
    pruner: str = "median",
    confidence: float = 0.95,
    overwrite: bool = False,
    sweep: SweepOptions | None = None,
) -> TuneResult:
    """Search each method's (and each single-task baseline's) ``params`` on validation, retrain
    the winners over ``seeds`` and write the comparison into ``out_dir``.

    Args:
        config: the experiment; its ``balancer`` section is replaced by each method in turn.
        out_dir: the tune folder (cells in ``cells/``, the studies in ``study.journal`` unless
            ``sweep.storage`` names another storage, then ``tune.csv``, ``tune.json``,
            ``report.md``, ``report.html``). Running again continues the studies.
        methods: the methods to tune (names, or balancer sections with options).
        params: the searched settings (:func:`~mtlkit.workflows.tune_space.parse_param`).
        trials: complete or pruned trials per study; default: the grid's size when every
            parameter is a list (more are not run), else required.
        seeds: how many seeds (``config.seed``, …) or the seeds the winners are retrained at;
            the search runs at the first.
        pruner: ``median``, ``hyperband`` or ``none``.
        confidence: the level of the confidence intervals.
        overwrite: remove the folder's cells, studies and outputs first.
        sweep: storage, workers and threads (:class:`~mtlkit.workflows.sweeps.SweepOptions`).

    Raises:
        ConfigError: no parameter, a parameter or key the configuration refuses, a bad number
            of trials or pruner, or any check of ``compare`` (checked before any training).
        DivergedError: as ``compare``.
    """
    sweep = sweep or SweepOptions()
    if not params:
        raise ConfigError("--param: give one or more, e.g. --param optim.lr=loguniform:1e-3:1e-1.")
    keys = [param.key for param in params]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--param: each key once, got {keys}.")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner!r}: choose one of {', '.join(PRUNERS)}.")
    if trials is None:
        if not is_grid(params):
            raise ConfigError("--trials: give the number of trials per method, e.g. --trials 20.")
        trials = grid_size(params)
    if trials < 1:
        raise ConfigError(f"--trials: give 1 or more, got {trials}.")
    seeds_used = seed_list(config, seeds)
    labels = [method_label(method) for method in methods]
    check_grid_config(config, labels)
    first = replace_seed(config, seeds_used[0])
    method_configs = {
        label: cell_config(first.to_dict(), m, first.seed, {}) for label, m in zip(labels, methods)
    }
    tasks = first.task_names
    if len(tasks) < 2:
        raise ConfigError(f"tasks.include: a comparison needs 2 or more tasks, got {tasks}.")
    subjects = [
        *((f"single-task {task}", single_task_config(first, task)) for task in tasks),
        *method_configs.items(),
    ]
    for _, subject_config in subjects:  # every key must exist before any training
        with_values(subject_config, sample_values(params))
    out_dir = prepare_grid_dir(out_dir, OUTPUTS, overwrite=overwrite)
    tag = "".join(param.describe() for param in params) + f"|{trials}|{pruner}"
    search = _Search(out_dir, tuple(subjects), tuple(params), trials, pruner, sweep, _digest(tag))
    _run_search(search)
    reports = [_study_report(search, subject, cfg) for subject, cfg in subjects]
    winners = {
        report.subject: with_values(cfg, report.chosen)
        for report, (_, cfg) in zip(reports, subjects)
    }
    entries = [
        (f"{subject.replace(' ', '-')}-seed{seed}", replace_seed(winner, seed))
        for subject, winner in winners.items()
        for seed in seeds_used
    ]
    cells, final_counts = CellGrid(out_dir, entries, "tune-final", sweep).run()
    per_subject = {
        subject: [cells[i * len(seeds_used) : (i + 1) * len(seeds_used)]]
        for i, subject in enumerate(winners)
    }
    by_subject = {report.subject: report for report in reports}
    comparison = summarise_grid(
        {task: per_subject[f"single-task {task}"] for task in tasks},
        {label: per_subject[label] for label in labels},
        ["tuned"],
        seeds_used,
        confidence,
        out_dir,
        _total(reports, final_counts),
    )
    comparison.rows = [_with_chosen(row, by_subject[row.method]) for row in comparison.rows]
    comparison.baselines = {
        task: _with_chosen(row, by_subject[f"single-task {task}"])
        for task, row in comparison.baselines.items()
    }
    result = TuneResult(comparison, reports)
    write_comparison(
        comparison,
        config,
        [param.describe() for param in params],
        kind="tune",
        tuning=tuning_blocks(
            reports,
            f"One Optuna study per method and per single-task baseline, {trials} trials each "
            f"(complete or pruned), {'the full grid' if is_grid(params) else 'TPE'}, pruner "
            f"{pruner}, at seed {seeds_used[0]}.",
            {label: search.load(label, cfg) for label, cfg in method_configs.items()},
            len(params),
        ),
        extra={"studies": [asdict(report) for report in reports], "pruner": pruner},
    )
    raise_if_diverged(comparison, out_dir / "tune.csv")
    return result


def replace_seed(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    """``config`` at ``seed``."""
    return with_values(config, {"seed": seed})


def with_values(config: ExperimentConfig, values: Mapping[str, Any]) -> ExperimentConfig:
    """``config`` with each dotted key of ``values`` set.

    Raises:
        ConfigError: a key or value the configuration refuses (named as ``--param KEY``).
    """
    raw = copy.deepcopy(config.to_dict())
    for key, value in values.items():
        set_value(raw, key, value, f"--param {key}")
    return parse_config(raw)


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _run_search(search: _Search) -> None:
    if is_grid(search.params):
        _enqueue_grid(search)
    threads = search.options.threads_per_trial()
    if search.options.workers == 1:
        with intra_op_threads(threads):
            _search_worker(search, None)
        return
    run_workers(_search_worker, (search, threads), search.options.workers)


def _search_worker(search: _Search, threads: int | None) -> None:
    """Run every study: a grid's enqueued points once each (:func:`work_on_queue`), a TPE search
    until it has ``search.trials`` complete or pruned trials."""
    import torch
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    if threads is not None:
        torch.set_num_threads(threads)
    counted = (TrialState.COMPLETE, TrialState.PRUNED)
    for subject, config in search.subjects:
        study = search.load(subject, config)
        label = f"{subject.replace(' ', '-')}-trial"

        def run(trial: Any, label: str = label, config: ExperimentConfig = config) -> float:
            values = {param.key: param.suggest(trial) for param in search.params}
            cell = run_cell(
                search.root, label, with_values(config, values), hooks=[PruningHook(trial)]
            )
            trial.set_user_attr("epochs", len(cell.metrics.get("history", [])))
            return cell.val_score

        if is_grid(search.params):
            work_on_queue(study, search.options, run)
            continue

        def retry(trial: Any, study: Any = study) -> None:
            study.enqueue_trial(dict(trial.params))

        def objective(trial: Any, run: Callable[[Any], float] = run) -> float:
            fail_stale_trials(trial.study, search.options.stale_after, retry)
            with heartbeat(trial.study, trial._trial_id, search.options.heartbeat):
                return run(trial)

        fail_stale_trials(study, search.options.stale_after, retry)
        if len(study.get_trials(deepcopy=False, states=counted)) >= search.trials:
            continue
        study.optimize(
            objective,
            callbacks=[MaxTrialsCallback(search.trials, states=counted)],
            catch=(),
            gc_after_trial=False,
        )


def _enqueue_grid(search: _Search) -> None:
    """Enqueue, in every study of a list search, each of the grid's first ``search.trials``
    points (in the lists' order) that no trial took yet (waiting, running, complete, pruned)."""
    from optuna.trial import TrialState

    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
    points = [
        dict(zip((param.key for param in search.params), values))
        for values in itertools.product(*(param.values for param in search.params))
    ][: search.trials]
    for subject, config in search.subjects:
        study = search.load(subject, config)
        taken = [
            trial.system_attrs.get("fixed_params", trial.params)
            for trial in study.get_trials(deepcopy=False, states=live)
        ]
        for point in points:
            if point not in taken:
                study.enqueue_trial(point)


def _study_report(search: _Search, subject: str, config: ExperimentConfig) -> StudyReport:
    study = search.load(subject, config)
    counts = count_trials(study)
    best = _winner(study, search.params)
    chosen = {param.key: best.params[param.key] for param in search.params}
    return StudyReport(
        subject=subject,
        study=study.study_name,
        counts=counts,
        full_epochs=(counts.complete + counts.pruned) * config.train.epochs,
        chosen=chosen,
        boundary=[p.key for p in search.params if p.on_boundary(chosen[p.key])],
        val_score=float(best.value),
    )


def _winner(study: Any, params: Sequence[Param]) -> Any:
    """The complete trial with the best validation score, ties to the first in the grid's order
    (as ``compare`` breaks them) or, for a search of ranges, to the earliest trial.

    Raises:
        RuntimeError: no trial of the study completed (all pruned or failed).
    """
    from optuna.trial import TrialState

    def order(trial: Any) -> tuple[int, ...]:
        if is_grid(params):
            return tuple(param.values.index(trial.params[param.key]) for param in params)
        return (trial.number,)

    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=order)
    if not complete:
        raise RuntimeError(
            f"study {study.study_name}: no trial completed (all pruned or failed); run more "
            "--trials or --pruner none."
        )
    choice = choose_by_validation([[trial.value] for trial in complete])
    return complete[choice.index or 0]


def _total(reports: Sequence[StudyReport], final: SweepCounts) -> SweepCounts:
    total = SweepCounts()
    for counts in (*(report.counts for report in reports), final):
        total.complete += counts.complete
        total.pruned += counts.pruned
        total.failed += counts.failed
        total.duplicates += counts.duplicates
        total.trial_epochs += counts.trial_epochs
        total.failures += counts.failures
    return total


def _with_chosen(row: Any, report: StudyReport) -> Any:
    from dataclasses import replace

    return replace(
        row, chosen=report.chosen_label, val_scores={report.chosen_label: report.val_score}
    )
