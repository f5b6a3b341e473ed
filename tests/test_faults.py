"""Faults and bad input: non-finite steps named at their step, corrupt or malicious checkpoints
refused, unwritable folders and full disks reported before anything looks complete."""

from __future__ import annotations

import copy
import errno
import json
import os
import pickle
from pathlib import Path

import pytest
import safetensors.torch
import torch

from mtlkit.cli.main import main
from mtlkit.data import Split, TensorBatches
from mtlkit.tasks import ClassificationTask
from mtlkit.training import CheckpointError, DivergedError, Trainer, load_checkpoint
from mtlkit.workflows import RunDir, build
from processes import run_group

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = """name: tiny
model: {backbone: mlp}
data: {val_fraction: 0.2}
train: {epochs: 1, batch_size: 16, progress: false}
"""


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


class _PoisonedAt(ClassificationTask):
    """A task whose loss is NaN at its ``at``-th call (1-based)."""

    def __init__(self, name: str, num_classes: int, at: int) -> None:
        super().__init__(name, num_classes)
        self.at, self.calls = at, 0

    def loss(self, output, target, mask=None):
        self.calls += 1
        loss = super().loss(output, target, mask)
        return loss * torch.nan if self.calls == self.at else loss


def _trainer(tasks, balancer: str = "famo", **options) -> Trainer:
    from mtlkit.balancing import create
    from mtlkit.models import HardSharing, classification_head, create_backbone
    from mtlkit.training import create_optimizer

    torch.manual_seed(0)
    trunk = create_backbone("mlp", (1, 4, 4))
    heads = {t.name: classification_head(trunk.out_features, t.num_classes) for t in tasks}
    model = HardSharing(trunk, heads)
    bal = create(balancer, num_tasks=len(tasks))
    optimizer = create_optimizer("sgd", model.parameters(), bal.parameters(), lr=0.1)
    return Trainer(model, tasks, bal, optimizer, progress=False, **options)


def _batches(epoch: int) -> TensorBatches:
    g = torch.Generator().manual_seed(0)
    split = Split(
        torch.rand(64, 1, 4, 4, generator=g),
        {
            "a": torch.randint(0, 3, (64,), generator=g),
            "b": torch.randint(0, 2, (64,), generator=g),
        },
    )
    loader = TensorBatches(split, 8, shuffle=True, seed=1)  # 8 steps an epoch
    loader.set_epoch(epoch)
    return loader


def test_a_nan_loss_is_named_at_its_step_and_no_checkpoint_holds_it():
    """Flags are read every 5 steps, checkpoints asked for every 2: the NaN of step 11 (epoch
    2, batch 3) is named exactly, with its task, and the last checkpoint is that of step 10."""
    trainer = _trainer(
        [ClassificationTask("a", 3), _PoisonedAt("b", 2, at=11)], check_finite_every=5
    )
    saved = []
    with pytest.raises(
        DivergedError, match=r"^step 11 \(epoch 2, batch 3\): the loss of task\(s\) \['b'\]"
    ):
        trainer.fit(
            _batches, 3, checkpoint=lambda p: saved.append(p.global_step), checkpoint_every=2
        )
    assert saved[-1] == 10 and 12 not in saved


def test_non_finite_gradients_with_finite_losses_are_caught_too():
    trainer = _trainer([ClassificationTask("a", 3), ClassificationTask("b", 2)], balancer="ew")
    weight = next(trainer.model.shared_parameters())
    calls = []
    weight.register_hook(
        lambda grad: grad * (torch.inf if len(calls.append(1) or calls) == 3 else 1)
    )
    with pytest.raises(DivergedError, match=r"^step 3 .*the gradients are not finite"):
        trainer.fit(_batches, 1)


def test_skip_leaves_model_optimizer_and_balancer_as_they_were_and_counts_the_step():
    tasks = [ClassificationTask("a", 3), _PoisonedAt("b", 2, at=3)]
    trainer = _trainer(tasks, on_nonfinite="skip")
    batches = list(_batches(1))
    for batch in batches[:2]:
        trainer.train_step(batch)
    before = [copy.deepcopy(module.state_dict()) for module in (trainer.model, trainer.balancer)]
    momentum = [
        trainer.optimizer.state[p]["momentum_buffer"].clone() for p in trainer.model.parameters()
    ]
    trainer.train_step(batches[2])  # NaN: skipped
    for module, state in zip((trainer.model, trainer.balancer), before):
        torch.testing.assert_close(module.state_dict(), state, rtol=0, atol=0)
    for p, m in zip(trainer.model.parameters(), momentum):
        assert torch.equal(trainer.optimizer.state[p]["momentum_buffer"], m)
    tasks[1].calls = 0
    result = trainer.fit(_batches, 2)
    assert result.skipped == 1 and [r.skipped for r in result.history] == [1, 0]
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


class _Evil:
    """Unpickling this would create a file: the classic code-carrying pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.mark.slow
def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(TINY)
    for name in ("last.pt", "best.pt"):
        with (run / name).open("wb") as file:
            pickle.dump({"model": _Evil(marker)}, file, protocol=2)  # as torch.save pickles
        torch.save({"model": {"w": torch.ones(1)}, "evil": _Evil(marker)}, run / f"t-{name}")
    for path in (run / "last.pt", run / "t-last.pt"):
        with pytest.raises(CheckpointError, match="not a readable mtlkit checkpoint"):
            load_checkpoint(path)
    assert main(["train", "--resume", str(run)]) == 1
    assert main(["eval", str(run), "--device", "cpu"]) == 1
    assert main(["export", str(run)]) == 1
    assert "not a readable mtlkit checkpoint" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.slow
def test_a_corrupt_checkpoint_stops_the_resume_and_nothing_is_overwritten(
    config_file, tmp_path, offline_data, capsys
):
    run = tmp_path / "run"
    assert main(["train", str(config_file), "--out", str(run)]) == 0
    (run / "metrics.json").unlink()  # as if killed before the end
    last = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(last[: len(last) // 3])
    (run / "previous.pt").write_bytes(b"\x00" * 100)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert "last.pt is not a readable" in err and "previous.pt is not a readable" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.slow
def test_a_checkpoint_of_an_earlier_loop_is_refused_clearly_before_any_work(
    config_file, tmp_path, offline_data, capsys
):
    """A ``last.pt`` without the hooks' states (written before they were saved) is refused with
    one line naming it (exit 1, no traceback), and the run folder is left as it was."""
    run = tmp_path / "run"
    assert main(["train", str(config_file), "--out", str(run)]) == 0
    (run / "metrics.json").unlink()  # as if killed before the end
    state = torch.load(run / "last.pt", weights_only=True)
    del state["hooks"]
    torch.save(state, run / "last.pt")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 1
    err = capsys.readouterr().err
    assert "last.pt was written by an mtlkit whose training loop did not save" in err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_full_disk_leaves_the_previous_checkpoints_whole(tmp_path, monkeypatch):
    folder = RunDir(tmp_path)
    folder.save_state({"model": {"w": torch.ones(3)}, "n": 1})
    folder.save_state({"model": {"w": torch.ones(3)}, "n": 2})
    original = torch.save

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        folder.save_state({"model": {"w": torch.zeros(3)}, "n": 3})
    monkeypatch.setattr(torch, "save", original)
    assert load_checkpoint(folder.last)["n"] == 2 and load_checkpoint(folder.previous)["n"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "previous.pt"]


def _train_as_user(rank: int, argv: list[str], uid: int | None) -> int:
    if uid is not None:
        os.setgid(uid)
        os.setuid(uid)
    return main(argv)


@pytest.mark.parametrize("obstacle", ["read-only folder", "a file in the way"])
def test_an_unwritable_run_folder_is_refused_before_any_work(
    config_file, tmp_path, monkeypatch, capfd, obstacle
):
    """Before the data is read. As root, chmod does not stop writes: the read-only case then
    runs in a child process that has dropped to an unprivileged user."""
    monkeypatch.setattr(build, "load_benchmark", lambda *a, **k: pytest.fail("data was read"))
    if obstacle == "read-only folder":
        out = tmp_path / "locked" / "run"
        out.parent.mkdir()
        out.parent.chmod(0o555)
        for folder in (tmp_path, *tmp_path.parents):
            folder.chmod(folder.stat().st_mode | 0o005)
        config_file.chmod(0o644)
    else:
        (tmp_path / "file").write_text("not a folder")
        out = tmp_path / "file" / "run"
    argv = ["train", str(config_file), "--out", str(out)]
    uid = 65534 if os.geteuid() == 0 and obstacle == "read-only folder" else None
    assert run_group(_train_as_user, 1, argv, uid) == [1]
    err = capfd.readouterr().err
    assert f"cannot write the run folder {out}" in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_export_writes_the_selected_weights_as_safetensors(config_file, tmp_path, offline_data):
    run = tmp_path / "run"
    assert main(["train", str(config_file), "--out", str(run)]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "shared" / "m.safetensors")]) == 0
    weights = safetensors.torch.load_file(tmp_path / "shared" / "m.safetensors")
    best = load_checkpoint(run / "best.pt")["model"]
    torch.testing.assert_close(
        weights, {k: v.contiguous() for k, v in best.items()}, rtol=0, atol=0
    )
    summary = json.loads((tmp_path / "shared" / "m.json").read_text())
    assert summary["tasks"] == ["left", "right"] and summary["config"]["name"] == "tiny"
    assert main(["export", str(tmp_path)]) == 2  # no run folder


@pytest.mark.slow
def test_resume_refuses_a_finished_run_another_config_and_misuse(
    config_file, tmp_path, offline_data, capsys
):
    run = tmp_path / "run"
    assert main(["train", str(config_file), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    (run / "metrics.json").unlink()
    assert main(["train", "--resume", str(run), "--set", "train.epochs=4"]) == 2
    assert "train.epochs: 1 vs 4" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--out", str(tmp_path / "x")]) == 2
    assert main(["train"]) == 2
    assert "--resume DIR" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WORLD_SIZE": "2"}, "(RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set)"),
        (
            {
                "WORLD_SIZE": "2",
                "RANK": "2",
                "LOCAL_RANK": "0",
                "MASTER_ADDR": "x",
                "MASTER_PORT": "1",
            },
            "0 <= RANK < WORLD_SIZE",
        ),
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' is not an integer"),
    ],
)
def test_inconsistent_torchrun_variables_exit_2_before_any_work(
    config_file, tmp_path, monkeypatch, capsys, env, expected
):
    monkeypatch.setattr(build, "load_benchmark", lambda *a, **k: pytest.fail("data was read"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["train", str(config_file), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtlkit") and "launch error:" in err and expected in err


class _Crash(Exception):
    """Stands for a kill: the process stops where it is, with what is on disk."""


@pytest.mark.slow
def test_baselines_resume_reads_finished_runs_and_resumes_the_interrupted_one(
    config_file, tmp_path, offline_data, monkeypatch
):
    settings = ["--set", "train.checkpoint_every=1", "--workers", "1"]  # the crash is in-process
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert main(["baselines", str(config_file), *settings, "--out", str(reference)]) == 0
    original, calls = Trainer._step, []

    def crash_in_the_second_run(self, batch, *position):
        calls.append(1)
        if len(calls) == 5:  # 3 steps a run: the second step of single-left
            raise _Crash
        return original(self, batch, *position)

    monkeypatch.setattr(Trainer, "_step", crash_in_the_second_run)
    with pytest.raises(_Crash):
        main(["baselines", str(config_file), *settings, "--out", str(out)])
    monkeypatch.setattr(Trainer, "_step", original)
    finished = (out / "multi-task" / "metrics.json").read_bytes()
    resumed = load_checkpoint(out / "single-left" / "last.pt")["progress"]["global_step"]
    assert resumed == 1
    assert main(["baselines", "--resume", str(out), "--workers", "1"]) == 0
    assert (out / "multi-task" / "metrics.json").read_bytes() == finished  # read, not retrained
    rows = [
        json.loads((folder / "comparison.json").read_text())["rows"] for folder in (out, reference)
    ]
    assert rows[0] == rows[1]
