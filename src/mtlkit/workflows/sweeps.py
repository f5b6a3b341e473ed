"""The sweep engine of every grid (``compare``, ``pareto``, ``tune``): Optuna studies, workers.

A grid is an Optuna study named by the fingerprint of its cells; each cell
(:mod:`mtlkit.workflows.cells`) is one trial, enqueued with its index. Any process running the
same command against the same storage joins the study and takes waiting trials, so:

* the default storage is Optuna's journal file ``<grid>/study.journal`` (no server; safe for
  processes on one machine or on a shared filesystem); ``storage`` takes any URL Optuna accepts
  (``postgresql://…``, ``mysql://…`` through SQLAlchemy, ``grpc://host:port`` for Optuna's
  storage server), so that the same command started on several machines works on one study;
* **every cell runs once**: a trial starts only when no earlier trial of its cell is waiting,
  running or complete (two processes enqueueing the same cell at once leave a duplicate, which
  steps aside, marked ``duplicate``), and a cell already finished on disk is never trained again;
* a running trial writes a heartbeat (a user attribute) every ``heartbeat`` seconds; a trial
  whose heartbeat is older than ``stale_after`` belongs to a killed worker: the next worker to
  look fails it and enqueues its cell again, and the retry continues the cell's run folder from
  its last checkpoint;
* ``workers`` processes run trials at once, each with ``threads`` intra-op threads (default:
  the user's ``OMP_NUM_THREADS`` if set, else the cores divided by the workers). A cell's numbers
  do not depend on which process trains it: a run is a function of its configuration and its
  thread count alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mtlkit.config import ConfigError, ExperimentConfig
from mtlkit.workflows.cells import Cell, cell_path, config_fingerprint, is_finished, run_cell
from mtlkit.workflows.worker_start import worker_context

JOURNAL = "study.journal"
"""The default storage of a grid folder: Optuna's journal file."""
CELL_PARAM = "cell"
"""The trial parameter that holds a cell's index in the grid."""
DEFAULT_HEARTBEAT = 10.0
DEFAULT_STALE_AFTER = 120.0
WAIT_POLL = 1.0
"""Seconds between two looks at the study while only other workers' trials run."""


@dataclass(frozen=True)
class SweepOptions:
    """How a grid runs: its storage, workers, threads per trial and staleness.

    Attributes:
        storage: an Optuna storage URL, or None for ``<grid>/study.journal``.
        workers: trials run at once on this machine (processes).
        threads: intra-op threads per trial; None: ``OMP_NUM_THREADS`` if set, else the cores
            divided by ``workers`` (and, for one worker, the process's own setting).
        heartbeat: seconds between a running trial's heartbeats.
        stale_after: seconds without a heartbeat after which a running trial is taken over.
    """

    storage: str | None = None
    workers: int = 1
    threads: int | None = None
    heartbeat: float = DEFAULT_HEARTBEAT
    stale_after: float = DEFAULT_STALE_AFTER

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers: give 1 or more, got {self.workers}.")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads per trial: give 1 or more, got {self.threads}.")
        if not 0 < self.heartbeat < self.stale_after:
            raise ConfigError(
                f"--stale-after {self.stale_after:g}: must exceed the heartbeat interval "
                f"({self.heartbeat:g} s)."
            )

    def threads_per_trial(self) -> int | None:
        """The intra-op threads a trial runs with (None: leave one worker's process as it is)."""
        return threads_per_worker(self.workers, self.threads)


def threads_per_worker(workers: int, threads: int | None = None) -> int | None:
    """The intra-op threads of each of ``workers`` processes training at once: ``threads`` if
    given, else the user's ``OMP_NUM_THREADS`` if set, else the cores divided by the workers
    (at least 1); None for one worker without either (its process is left as it is)."""
    if threads is not None:
        return threads
    user = os.environ.get("OMP_NUM_THREADS", "").strip()
    if user.isdigit() and int(user) > 0:
        return int(user)
    if workers == 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


@dataclass
class SweepCounts:
    """What a sweep's trials did, over every call on its study.

    Attributes:
        complete: trials that finished a cell (or, for ``tune``, a search point).
        pruned: trials stopped early by the pruner (never results).
        failed: trials that failed (an error, or a killed worker's trial taken over).
        duplicates: trials that stepped aside for an earlier trial of their cell.
        trial_epochs: epochs trained by all complete and pruned trials.
    """

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    duplicates: int = 0
    trial_epochs: int = 0
    failures: list[str] = field(default_factory=list)


def open_storage(root: Path, url: str | None) -> Any:
    """The Optuna storage of a grid: ``url``, or the journal file in ``root``."""
    import optuna

    if url is None:
        from optuna.storages.journal import JournalFileBackend

        root.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(root / JOURNAL)))
    if url.startswith("grpc://"):
        host, _, port = url.removeprefix("grpc://").partition(":")
        return optuna.storages.GrpcStorageProxy(host=host, port=int(port or 13000))
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as error:  # SQLAlchemy raises many kinds for a bad URL or server
        raise ConfigError(
            f"--storage {url}: Optuna cannot open it ({type(error).__name__}: {error}); give a "
            "reachable database URL such as postgresql://user@host/db, or leave --storage out "
            "for the journal file in the output folder."
        ) from None


def grid_study_name(kind: str, configs: Sequence[ExperimentConfig]) -> str:
    """``<kind>-<sha256 of the cells' fingerprints>``: the same command names the same study."""
    digest = hashlib.sha256("".join(config_fingerprint(c) for c in configs).encode())
    return f"{kind}-{digest.hexdigest()[:16]}"


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` intra-op threads (None: as it is), then restore them."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def heartbeat(study: Any, trial_id: int, interval: float) -> Iterator[None]:
    """Write ``time.time()`` into the trial's ``heartbeat`` attribute every ``interval`` s."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            study._storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
            if stop.wait(interval):
                return

    study._storage.set_trial_user_attr(trial_id, "heartbeat", time.time())
    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale_trials(study: Any, stale_after: float, retry: Callable[[Any], None]) -> None:
    """Fail every running trial of ``study`` whose heartbeat is older than ``stale_after``
    seconds (its worker was killed) and call ``retry`` with each one this process failed."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.user_attrs.get("heartbeat", trial.datetime_start.timestamp())
        if now - float(beat) <= stale_after:
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "stale", True)
            failed = study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # another worker took it over first
        if failed:
            retry(trial)


class CellGrid:
    """One grid's study: enqueue its cells, run them on workers, read them back.

    Args:
        root: the grid folder (cells in ``cells/``).
        cells: the grid's cells, each a label and its configuration, in order.
        kind: the command (``compare``, ``pareto``): the study name's prefix.
        options: storage, workers, threads, staleness.
    """

    def __init__(
        self,
        root: Path,
        cells: Sequence[tuple[str, ExperimentConfig]],
        kind: str,
        options: SweepOptions,
    ) -> None:
        self.root = Path(root)
        self.entries = list(cells)
        unique = {config_fingerprint(config): (label, config) for label, config in reversed(cells)}
        self.cells = list(reversed(unique.values()))  # one per fingerprint, first label kept
        self.options = options
        self.name = grid_study_name(kind, [config for _, config in self.cells])

    def load_study(self) -> Any:
        """The grid's study in its storage (created if new)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.root, self.options.storage)
        return optuna.create_study(study_name=self.name, storage=storage, load_if_exists=True)

    def run(self) -> tuple[list[Cell], SweepCounts]:
        """Train every cell not finished yet, on ``options.workers`` processes, and return
        every entry's cell (in the order given, ``trained`` set for those this call trained;
        entries with the same configuration share one cell) and the trial counts.

        Raises:
            RuntimeError: a cell was left unfinished (a worker failed; its error is named).
        """
        paths = [cell_path(self.root, label, config) for label, config in self.entries]
        before = [is_finished(path) for path in paths]
        study = self.load_study()
        self.enqueue_missing(study)
        threads = self.options.threads_per_trial()
        if self.options.workers == 1:
            with intra_op_threads(threads):
                work_on_grid(self, study)
        else:
            run_workers(_worker_main, (self, threads), self.options.workers)
        counts = count_trials(self.load_study())
        missing = [path.name for path in paths if not is_finished(path)]
        if missing:
            raise RuntimeError(
                f"{len(missing)} cell(s) unfinished ({', '.join(missing[:3])}): "
                f"{'; '.join(counts.failures[-3:]) or 'a worker stopped'}. Run the same command "
                "again to finish them (finished cells are kept)."
            )
        cells = [run_cell(self.root, label, config) for label, config in self.entries]
        finished = [replace(cell, trained=not was) for cell, was in zip(cells, before)]
        return finished, counts

    def enqueue_missing(self, study: Any) -> None:
        """Enqueue each cell that is neither finished on disk nor waiting or running."""
        from optuna.trial import TrialState

        active = {
            _cell_of(trial)
            for trial in study.get_trials(
                deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)
            )
        }
        for index, (label, cfg) in enumerate(self.cells):
            if index not in active and not is_finished(cell_path(self.root, label, cfg)):
                study.enqueue_trial({CELL_PARAM: index}, user_attrs={"cell": label})


def _worker_main(grid: CellGrid, threads: int | None) -> None:
    """A worker process: its thread count first, then trials until none waits or runs."""
    if threads is not None:
        torch.set_num_threads(threads)
    work_on_grid(grid, grid.load_study())


def run_workers(target: Callable[..., None], args: tuple[Any, ...], workers: int) -> None:
    """Run ``target(*args)`` in ``workers`` processes started by
    :data:`~mtlkit.workflows.worker_start.START_METHOD` and wait for them.

    Raises:
        RuntimeError: a worker failed (its trial is failed in the study; the finished cells
            are kept).
    """
    context = worker_context()
    processes = [
        context.Process(target=target, args=args, name=f"mtlkit-worker-{i}") for i in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [process.exitcode for process in processes if process.exitcode]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {workers} sweep workers failed (exit codes {failed}; their errors "
            "are printed above); run the same command again to finish (finished runs are kept)."
        )


def work_on_grid(grid: CellGrid, study: Any) -> None:
    """Run the grid's waiting trials (:func:`work_on_queue`), each training its cell."""

    def run(trial: Any) -> float:
        label, cfg = grid.cells[trial.suggest_int(CELL_PARAM, 0, len(grid.cells) - 1)]
        try:
            cell = run_cell(grid.root, label, cfg)
        except BaseException as error:
            trial.set_user_attr("error", f"{cell_path(grid.root, label, cfg).name}: {error}")
            raise
        trial.set_user_attr("epochs", len(cell.metrics.get("history", [])))
        return _trial_value(cell)

    work_on_queue(study, grid.options, run)


def work_on_queue(study: Any, options: SweepOptions, run: Callable[[Any], float]) -> None:
    """Take ``study``'s waiting (enqueued) trials one by one and ``run`` each, until none waits
    or runs. A trial whose parameters an earlier live trial was enqueued with steps aside
    (``duplicate``); a running trial whose worker died is failed when stale and enqueued again;
    ``run`` raising :class:`optuna.TrialPruned` prunes its trial.

    Raises:
        BaseException: what ``run`` raised but pruning (its trial is failed first).
    """
    import optuna
    from optuna.trial import TrialState

    def retry(trial: Any) -> None:
        kept = {key: value for key, value in trial.user_attrs.items() if key == "cell"}
        study.enqueue_trial(_fixed(trial), user_attrs=kept)

    while True:
        fail_stale_trials(study, options.stale_after, retry)
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return
            # Another worker's trial: wait for it, to take it over if it goes stale.
            time.sleep(min(options.heartbeat, WAIT_POLL))
            continue
        trial = study.ask()
        if "fixed_params" not in study._storage.get_trial_system_attrs(trial._trial_id):
            # Another worker took the last waiting trial between the look and the ask.
            trial.set_user_attr("idle", True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        if _earlier_trial(study, trial):
            trial.set_user_attr("duplicate", True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        try:
            with heartbeat(study, trial._trial_id, options.heartbeat):
                value = run(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        study.tell(trial, value)


def _fixed(trial: Any) -> dict[str, Any]:
    """The parameters a trial was enqueued with."""
    return dict(trial.system_attrs.get("fixed_params", {}))


def _earlier_trial(study: Any, trial: Any) -> bool:
    """Whether a trial before ``trial`` enqueued with its parameters is waiting, running or
    finished (complete or pruned)."""
    from optuna.trial import TrialState

    fixed = study._storage.get_trial_system_attrs(trial._trial_id)["fixed_params"]
    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
    return any(
        other.number < trial.number and _fixed(other) == fixed
        for other in study.get_trials(deepcopy=False, states=live)
    )


def _cell_of(trial: Any) -> int | None:
    """The cell index of a grid trial (enqueued: in its fixed parameters until it starts)."""
    fixed = trial.system_attrs.get("fixed_params", {})
    return trial.params.get(CELL_PARAM, fixed.get(CELL_PARAM))


def _trial_value(cell: Cell) -> float:
    """A grid trial's value: the cell's validation score; −∞ when it diverged or has no
    validation split (the grid workflows read the cells, not these values)."""
    score = cell.metrics.get("best_val_score")
    return -math.inf if cell.diverged is not None or score is None else float(score)


def count_trials(study: Any) -> SweepCounts:
    """Count ``study``'s trials by what they did (see :class:`SweepCounts`)."""
    from optuna.trial import TrialState

    counts = SweepCounts()
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if attrs.get("idle") or attrs.get("duplicate"):
            counts.duplicates += bool(attrs.get("duplicate"))
            continue
        if trial.state == TrialState.COMPLETE:
            counts.complete += 1
            counts.trial_epochs += int(attrs.get("epochs", len(trial.intermediate_values)))
        elif trial.state == TrialState.PRUNED:
            counts.pruned += 1
            counts.trial_epochs += len(trial.intermediate_values)
        elif trial.state == TrialState.FAIL:
            counts.failed += 1
            if "error" in attrs:
                counts.failures.append(str(attrs["error"]))
    return counts


def trials_line(counts: SweepCounts) -> str:
    """``"12 complete, 3 pruned, 0 failed; 45 trial-epochs"`` for a report."""
    return (
        f"{counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed; "
        f"{counts.trial_epochs} trial-epochs"
    )
