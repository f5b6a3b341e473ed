"""``baselines --workers``: the K+1 trainings in worker processes at once, with the numbers, the
resume, the errors and the refusals of one process."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import sys
import time

import pytest

from mtlkit.cli.main import main
from mtlkit.config import parse_config
from mtlkit.training import DivergedError, LaunchError, Trainer, load_checkpoint
from mtlkit.workflows import baselines, train_with_baselines, worker_start
from mtlkit.workflows.baselines import SINGLE_TASK_NICE, default_workers
from mtlkit.workflows.parallel_runs import Job, PrefixedLines, run_jobs
from mtlkit.workflows.sweeps import threads_per_worker

RUNS = ("multi-task", "single-left", "single-right")


@pytest.fixture
def forked_workers(monkeypatch, offline_data):
    """Workers started by fork: they inherit the fake data and the test's patches."""
    monkeypatch.setattr(worker_start, "START_METHOD", "fork")


def _run_files(out, name: str) -> tuple[dict, list]:
    """A run's test metrics and training history (its numbers, not its timings)."""
    metrics = json.loads((out / name / "metrics.json").read_text())
    history = [{k: v for k, v in r.items() if "seconds" not in k} for r in metrics["history"]]
    return metrics["test"], history


def _rows(out) -> list[dict]:
    return json.loads((out / "comparison.json").read_text())["rows"]


def _stop_at(run: str, at_step: int, stop) -> object:
    """A ``Trainer._step`` that calls ``stop()`` at the ``at_step``-th step of the worker process
    training ``run`` (the others train as ever)."""
    original, calls = Trainer._step, []

    def step(self, batch, *position):
        if multiprocessing.current_process().name == f"mtlkit-{run}":
            calls.append(1)
            if len(calls) == at_step:
                stop()
        return original(self, batch, *position)

    return step


def _raise(error: BaseException):
    def stop():
        raise error

    return stop


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_workers_give_one_processs_numbers_at_the_same_thread_count(
    tmp_path, tiny_config, forked_workers
):
    config = parse_config(tiny_config())
    train_with_baselines(config, tmp_path / "one", workers=1, threads=1)
    train_with_baselines(config, tmp_path / "three", workers=3, threads=1)
    train_with_baselines(config, tmp_path / "two", workers=2, threads=1)  # one run waits
    for out in (tmp_path / "two", tmp_path / "three"):
        assert _rows(out) == _rows(tmp_path / "one")
        for name in RUNS:
            assert _run_files(out, name) == _run_files(tmp_path / "one", name), name
    assert (tmp_path / "three" / "report.md").is_file()


@pytest.mark.slow
def test_an_error_in_a_worker_names_its_run_and_leaves_no_report(
    tmp_path, tiny_config, forked_workers, monkeypatch, capsys
):
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(json.dumps(tiny_config()))  # JSON is YAML
    failure = DivergedError("step 2: the loss of task 'right' is nan")
    monkeypatch.setattr(Trainer, "_step", _stop_at("single-right", 2, _raise(failure)))
    out = tmp_path / "cmp"
    assert main(["baselines", str(config_file), "--workers", "3", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "error: single-right: step 2: the loss of task 'right' is nan" in err
    assert not (out / "comparison.json").exists() and not (out / "report.md").exists()


@pytest.mark.slow
def test_a_killed_worker_is_named_and_resume_with_workers_finishes_the_comparison(
    tmp_path, tiny_config, forked_workers, monkeypatch
):
    config = parse_config(tiny_config(train={"epochs": 2, "checkpoint_every": 1}))
    train_with_baselines(config, tmp_path / "reference", workers=1, threads=1)
    out = tmp_path / "out"

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_step", _stop_at("single-left", 3, _kill))
        with pytest.raises(ChildProcessError, match="single-left: its worker process ended"):
            train_with_baselines(config, out, workers=3, threads=1)
    checkpoint = load_checkpoint(out / "single-left" / "last.pt")
    assert checkpoint["progress"]["global_step"] == 2  # saved after each step, then killed
    assert not (out / "comparison.json").exists()
    finished = {
        name: (out / name / "metrics.json").read_bytes()
        for name in RUNS
        if (out / name / "metrics.json").is_file()
    }
    train_with_baselines(config, out, resume=True, workers=3, threads=1)
    for name, before in finished.items():  # read back, not trained again
        assert (out / name / "metrics.json").read_bytes() == before
    assert _rows(out) == _rows(tmp_path / "reference")
    for name in RUNS:
        assert _run_files(out, name) == _run_files(tmp_path / "reference", name), name


def _exit_with(argv: list[str]) -> None:
    """A forked command: ``mtlkit argv``, its exit code the process's."""
    sys.exit(main(argv))


@pytest.mark.slow
def test_sigterm_to_the_command_stops_every_worker_at_a_checkpoint_and_resume_finishes(
    tmp_path, tiny_config, forked_workers, monkeypatch
):
    raw = tiny_config(train={"epochs": 2, "checkpoint_every": 1})
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(json.dumps(raw))
    threads = threads_per_worker(3)  # what the command's 3 workers train on
    train_with_baselines(parse_config(raw), tmp_path / "reference", workers=1, threads=threads)
    original = Trainer._step

    def slow(self, batch, *position):  # 6 steps a run: the command is surely mid-training
        time.sleep(0.5)
        return original(self, batch, *position)

    monkeypatch.setattr(Trainer, "_step", slow)
    out = tmp_path / "out"
    argv = ["baselines", str(config_file), "--workers", "3", "--out", str(out)]
    command = multiprocessing.get_context("fork").Process(target=_exit_with, args=(argv,))
    command.start()
    deadline = time.monotonic() + 120
    while not all((out / name / "last.pt").is_file() for name in RUNS):
        assert time.monotonic() < deadline, "the runs wrote no checkpoint"
        time.sleep(0.01)
    os.kill(command.pid, signal.SIGTERM)
    command.join(120)
    assert command.exitcode == 128 + signal.SIGTERM
    assert not (out / "comparison.json").exists()
    monkeypatch.setattr(Trainer, "_step", original)
    assert main(["baselines", "--resume", str(out), "--workers", "3"]) == 0
    assert _rows(out) == _rows(tmp_path / "reference")


def test_workers_above_one_are_refused_under_torchrun_before_any_work(
    tmp_path, tiny_config, monkeypatch, capsys
):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchError, match="baselines with --workers 2"):
        train_with_baselines(parse_config(tiny_config()), tmp_path / "cmp", workers=2)
    assert not (tmp_path / "cmp").exists()
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(json.dumps(tiny_config()))
    out = ["--out", str(tmp_path / "c")]
    assert main(["baselines", str(config_file), "--workers", "2", *out]) == 2
    assert "launch error: baselines with --workers 2" in capsys.readouterr().err


def test_the_default_runs_every_training_at_once_up_to_one_and_a_half_per_core(
    tiny_config, monkeypatch
):
    config = parse_config(tiny_config())
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for cores, runs, workers in ((2, 3, 3), (2, 5, 3), (8, 3, 3), (8, 20, 12), (1, 3, 1)):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        assert default_workers(config, runs) == workers, (cores, runs)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert default_workers(config, 3) == 1  # one process per device already


def test_a_workers_output_is_prefixed_line_by_line_and_is_no_terminal():
    sink = io.StringIO()
    lines = PrefixedLines(sink, "[single-left] ")
    lines.write("epoch 1  left=0.5")
    assert sink.getvalue() == ""  # a partial line waits for its end
    lines.write("\nepoch 2\nepoch")
    lines.flush()
    assert sink.getvalue().splitlines(keepends=True) == [
        "[single-left] epoch 1  left=0.5\n",
        "[single-left] epoch 2\n",
        "[single-left] epoch\n",  # the partial line, ended by the flush
    ]
    assert not lines.isatty()


def _imported(names: tuple[str, ...], sender) -> None:
    """A worker's target: which of ``names`` the worker has imported before it runs anything."""
    sender.send([name in sys.modules for name in names])


@pytest.mark.skipif(worker_start.START_METHOD != "forkserver", reason="no fork server here")
def test_workers_fork_from_a_server_that_has_imported_the_training_code():
    """A worker does not import the training code again (about 4 s of CPU each): the fork
    server it comes from did, once, started while the parent goes on."""
    worker_start.start_worker_server()
    context = worker_start.worker_context()
    receiver, sender = context.Pipe(duplex=False)
    worker = context.Process(target=_imported, args=(worker_start.WORKER_PRELOAD, sender))
    worker.start()
    assert receiver.recv() == [True] * len(worker_start.WORKER_PRELOAD)
    worker.join()
    assert worker.exitcode == 0


def _niceness() -> int:
    """A worker's target: its niceness."""
    return os.nice(0)


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no niceness on this platform")
def test_a_jobs_nice_lowers_its_workers_priority_by_that_much(monkeypatch):
    own = os.nice(0)
    if own > 16:
        pytest.skip(f"this process runs at niceness {own}: 3 more would pass the cap of 19")
    monkeypatch.setattr(worker_start, "START_METHOD", "fork")
    jobs = [Job("long", _niceness, ()), Job("short", _niceness, (), nice=3)]
    assert run_jobs(jobs, workers=2, threads=1) == {"long": own, "short": own + 3}


def test_a_job_cannot_raise_its_workers_priority():
    with pytest.raises(ValueError, match="job short: nice must be 0 or more, got -1"):
        Job("short", _niceness, (), nice=-1)


def test_baselines_runs_the_single_task_runs_below_the_multi_task_runs_priority(
    tmp_path, tiny_config, forked_workers, monkeypatch
):
    """The multi-task run, the longest, is served first when the runs outnumber the cores."""
    asked: list[Job] = []

    class Asked(Exception):
        """Raised instead of training: the jobs as asked are what is checked."""

    def record(jobs, workers, threads):
        asked.extend(jobs)
        raise Asked

    monkeypatch.setattr(baselines, "run_jobs", record)
    with pytest.raises(Asked):
        train_with_baselines(parse_config(tiny_config()), tmp_path / "cmp", workers=3)
    assert {job.name: job.nice for job in asked} == {
        "multi-task": 0,
        "single-left": SINGLE_TASK_NICE,
        "single-right": SINGLE_TASK_NICE,
    }
    assert SINGLE_TASK_NICE > 0
