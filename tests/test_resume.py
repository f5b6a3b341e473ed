"""Never lose a run: a training process killed anywhere (SIGKILL inside an epoch, between epochs,
while writing a checkpoint, between its two renames) or stopped by SIGTERM resumes with
``mtlkit train --resume`` to parameters bit-identical to a run that was never interrupted, and the
same ``metrics.json`` (wall times aside); one process and two.

The kill points are drawn at random for each test run (the seed is in every failure message;
set ``MTLKIT_FAULT_SEED`` to replay one).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import random
import signal
from pathlib import Path

import pytest
import torch
import torch.utils.tensorboard  # noqa: F401 - imported once here, not in every forked child
import yaml

from mtlkit.cli.main import main
from mtlkit.training import Trainer
from mtlkit.workflows import build, run_dir
from processes import run_group

SEED = int(os.environ.get("MTLKIT_FAULT_SEED", random.SystemRandom().randrange(2**32)))
STEPS_PER_EPOCH, EPOCHS = 5, 2
"""One process: 40 training samples (fake data, 20 % validation) at batch 8."""

CONFIG = {
    "name": "tiny",
    "model": {"backbone": "mlp"},
    "data": {"val_fraction": 0.2},
    "schedule": {"name": "cosine"},
    "optim": {"lr": 0.1},
    "train": {
        "epochs": EPOCHS,
        "batch_size": 8,
        "progress": False,
        "checkpoint_every": 2,
        "check_finite_every": 3,
    },
}


def _use_fake_data(fake) -> None:
    from mtlkit.data import load_benchmark

    build.load_benchmark = lambda name, **options: load_benchmark(
        name, **{**options, **fake.kwargs}
    )


def _arm(trigger: tuple[str, int] | None) -> None:
    """Make this process die (SIGKILL) or be asked to stop (SIGTERM) at ``trigger``:
    ``("step", n)``: before its n-th training step; ``("term", n)``: SIGTERM before its n-th
    step; ``("write", n)``: half-way through writing its n-th checkpoint; ``("rename", n)``:
    between the two renames of its n-th checkpoint (``last.pt`` already moved away)."""
    if trigger is None:
        return
    kind, at = trigger
    count = [0]

    def reached() -> bool:
        count[0] += 1
        return count[0] == at

    if kind in ("step", "term"):
        original_step = Trainer._step

        def step(self, batch, *position):
            if reached():
                os.kill(os.getpid(), signal.SIGKILL if kind == "step" else signal.SIGTERM)
            return original_step(self, batch, *position)

        Trainer._step = step
    elif kind == "write":
        original_save = torch.save

        def save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and "progress" in obj and reached():
                payload = io.BytesIO()
                original_save(obj, payload)
                Path(f).write_bytes(payload.getvalue()[: len(payload.getvalue()) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return original_save(obj, f, *args, **kwargs)

        torch.save = save
    else:
        original_replace = run_dir.replace_durably

        def replace(source, target):
            original_replace(source, target)
            if target.name == "previous.pt" and reached():
                os.kill(os.getpid(), signal.SIGKILL)

        run_dir.replace_durably = replace


def _run(rank: int, fake, argv: list[str], trigger: tuple[str, int] | None, armed: int) -> int:
    _use_fake_data(fake)
    if rank == armed:
        _arm(trigger)
    return main(argv)


def _train(fake, config: Path, out: Path, trigger=None, *, world: int = 1, armed: int = 0):
    argv = ["train", str(config), "--out", str(out)]
    return run_group(_run, world, fake, argv, trigger, armed)


def _resume(fake, out: Path, trigger=None, *, world: int = 1, armed: int = 0):
    return run_group(_run, world, fake, ["train", "--resume", str(out)], trigger, armed)


def _outcome(out: Path) -> tuple[dict, dict, dict]:
    """The final training state, the selected weights, and metrics.json without wall and step
    times."""
    last = torch.load(out / "last.pt", weights_only=True)
    best = torch.load(out / "best.pt", weights_only=True)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("seconds")
    metrics.pop("step_seconds")
    for record in metrics["history"]:
        record.pop("seconds")
        record.pop("step_seconds")
    state = {key: last[key] for key in ("model", "optimizer", "balancer", "scheduler")}
    return state, best["model"], metrics


def _assert_same(out: Path, reference: Path, what: str) -> None:
    got, want = _outcome(out), _outcome(reference)
    message = f"{what} (MTLKIT_FAULT_SEED={SEED})"
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0, msg=lambda m: f"{message}: {m}")
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=0, msg=lambda m: f"{message}: {m}")
    assert got[2] == want[2], message
    assert not (out / "previous.pt").exists() and not list(out.glob(".*")), message


def _config(tmp_path: Path, balancer: str) -> Path:
    path = tmp_path / f"{balancer}.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "balancer": {"name": balancer}}))
    return path


@pytest.fixture
def reference(tmp_path, fake_base_data) -> tuple[Path, Path]:
    """The config (GradVac: the engine's path, seeded draws, a state; a cosine schedule) and
    the run folder of its uninterrupted run."""
    config = _config(tmp_path, "gradvac")
    assert _train(fake_base_data, config, tmp_path / "reference") == [0]
    return config, tmp_path / "reference"


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_one_process_killed_anywhere_resumes_bit_identical(reference, fake_base_data, capfd):
    config, reference = reference
    rng = random.Random(SEED)
    total = STEPS_PER_EPOCH * EPOCHS
    checkpoints = total // 2 + EPOCHS
    inside = rng.choice([s for s in range(2, total) if s % STEPS_PER_EPOCH != 1])
    scenarios = {
        # killed before its first checkpoint, then the resumed run killed inside an epoch
        f"SIGKILL before step 1, then before step {inside}": [("step", 1), ("step", inside)],
        "SIGKILL between epochs": [("step", STEPS_PER_EPOCH + 1)],
        "SIGKILL while writing a checkpoint": [("write", rng.randint(1, checkpoints))],
        "SIGKILL between a checkpoint's renames": [("rename", rng.randint(1, checkpoints - 1))],
    }
    for name, triggers in scenarios.items():
        out = reference.parent / name.replace(" ", "-")
        assert _train(fake_base_data, config, out, triggers[0]) == [-signal.SIGKILL], name
        for trigger in triggers[1:]:
            assert _resume(fake_base_data, out, trigger) == [-signal.SIGKILL], name
        assert _resume(fake_base_data, out) == [0], name
        _assert_same(out, reference, name)
    err = capfd.readouterr().err
    assert "has no checkpoint yet; starting it again" in err
    assert "resuming from" in err  # the renames' kill left previous.pt only


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_sigterm_stops_after_a_checkpoint_and_says_how_to_resume(reference, fake_base_data, capfd):
    config, reference = reference
    out = reference.parent / "stopped"
    at = random.Random(SEED).randint(2, STEPS_PER_EPOCH * EPOCHS)
    capfd.readouterr()
    assert _train(fake_base_data, config, out, ("term", at)) == [128 + signal.SIGTERM]
    err = capfd.readouterr().err
    assert f"Resume with: mtlkit train --resume {out}" in err and len(err.splitlines()) == 1
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["progress"]["global_step"] == at  # the step in progress was finished first
    assert _resume(fake_base_data, out) == [0]
    _assert_same(out, reference, f"SIGTERM at step {at} (MTLKIT_FAULT_SEED={SEED})")


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_two_processes_stopped_and_killed_resume_bit_identical(tmp_path, fake_base_data, capfd):
    """FAMO through DDP: SIGTERM to one rank only (both agree to stop at the next read of the
    flags), resumed, then SIGKILL of one rank (torchrun then ends the other), resumed again."""
    rng = random.Random(SEED)
    config = _config(tmp_path, "famo")
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert _train(fake_base_data, config, reference, world=2) == [0, 0]
    steps = 3 * EPOCHS  # 20 samples per rank at batch 8; the flags are read every 3 steps
    stop_at = rng.randint(1, 3)
    codes = _train(fake_base_data, config, out, ("term", stop_at), world=2, armed=1)
    assert codes == [128 + signal.SIGTERM] * 2
    assert "torchrun --nproc-per-node 2 -m mtlkit train --resume" in capfd.readouterr().err
    stopped = torch.load(out / "last.pt", weights_only=True)["progress"]["global_step"]
    assert stopped == 3  # the first read of the flags after the signal
    kill_at = rng.randint(1, steps - stopped)  # counted from the resumed run's first step
    codes = _resume(fake_base_data, out, ("step", kill_at), world=2, armed=1)
    assert codes[1] == -signal.SIGKILL
    assert _resume(fake_base_data, out, world=2) == [0, 0]
    what = f"two processes, SIGTERM at step {stop_at}, SIGKILL {kill_at} steps after resuming"
    _assert_same(out, reference, what)


def _killed_while_loading(rank: int, fake, argv: list[str]) -> int:
    """Run ``argv`` in a process that dies (SIGKILL) while its data loads."""
    _use_fake_data(fake)
    training = importlib.import_module("mtlkit.workflows.train")

    def load_and_die(config):
        os.kill(os.getpid(), signal.SIGKILL)

    training.load_data = load_and_die
    return main(argv)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_killed_while_its_data_loads_resumes_from_the_start(reference, fake_base_data, capfd):
    config, reference = reference
    out = reference.parent / "killed-loading"
    argv = ["train", str(config), "--out", str(out)]
    assert run_group(_killed_while_loading, 1, fake_base_data, argv) == [-signal.SIGKILL]
    assert (out / "config.yaml").is_file() and not (out / "last.pt").exists()
    capfd.readouterr()
    assert _resume(fake_base_data, out) == [0]
    assert "has no checkpoint yet; starting it again" in capfd.readouterr().err
    _assert_same(out, reference, "SIGKILL while the data loads")


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_two_processes_with_input_noise_killed_mid_epoch_resume_bit_identical(
    tmp_path, fake_base_data
):
    """Each rank draws its noise from its own generator (seed + rank): the checkpoint keeps
    every rank's, and each rank gets its own back."""
    rng = random.Random(SEED)
    path = tmp_path / "noise.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "noise": {"gaussian": 0.3, "shift": 1}}))
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert _train(fake_base_data, path, reference, world=2) == [0, 0]
    kill_at = rng.choice([3, 4, 5, 6])  # after a checkpoint (3 steps an epoch, one every 2)
    codes = _train(fake_base_data, path, out, ("step", kill_at), world=2, armed=1)
    assert codes[1] == -signal.SIGKILL
    assert _resume(fake_base_data, out, world=2) == [0, 0]
    _assert_same(out, reference, f"two processes with noise, SIGKILL before step {kill_at}")
