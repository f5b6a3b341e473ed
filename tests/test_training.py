"""The training loop: it learns, selects on validation, is deterministic, and saves safely."""

from __future__ import annotations

import math

import pytest
import torch

from mtlkit.balancing import create
from mtlkit.data import Split, TensorBatches
from mtlkit.models import HardSharing, classification_head, create_backbone
from mtlkit.tasks import ClassificationTask
from mtlkit.training import (
    CheckpointError,
    DivergedError,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)


def learnable_split(n: int, seed: int) -> Split:
    """8×8 images: task ``quadrant`` = which quadrant is bright, task ``level`` = its brightness."""
    g = torch.Generator().manual_seed(seed)
    quadrant = torch.randint(0, 4, (n,), generator=g)
    level = torch.randint(0, 3, (n,), generator=g)
    images = 0.1 * torch.rand(n, 1, 8, 8, generator=g)
    for q in range(4):
        rows, cols = divmod(q, 2)
        mask = quadrant == q
        images[mask, :, rows * 4 : rows * 4 + 4, cols * 4 : cols * 4 + 4] += (
            0.3 + 0.3 * level[mask].float()
        ).view(-1, 1, 1, 1)
    return Split(images, {"quadrant": quadrant, "level": level})


def make_trainer(seed: int = 0, lr: float = 0.1, balancer: str = "ew") -> Trainer:
    torch.manual_seed(seed)
    trunk = create_backbone("mlp", 1, (8, 8))
    tasks = [ClassificationTask("quadrant", 4), ClassificationTask("level", 3)]
    model = HardSharing(trunk, {t.name: classification_head(128, t.num_classes) for t in tasks})
    bal = create(balancer, num_tasks=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return Trainer(model, tasks, bal, optimizer, progress=False)


def epoch_batches(split: Split, seed: int = 0):
    def make(epoch: int) -> TensorBatches:
        loader = TensorBatches(split, 32, shuffle=True, seed=seed)
        loader.set_epoch(epoch)
        return loader

    return make


def test_training_learns_both_tasks():
    train, test = learnable_split(512, 0), learnable_split(256, 1)
    trainer = make_trainer()
    trainer.fit(epoch_batches(train), epochs=6)
    reports = trainer.evaluate(TensorBatches(test, 128))
    assert reports["quadrant"].accuracy > 0.95
    assert reports["level"].accuracy > 0.9


def test_the_best_validation_epoch_is_kept():
    train, val = learnable_split(256, 0), learnable_split(128, 2)
    trainer = make_trainer(lr=0.5)  # a high rate makes validation scores move around
    states = {}

    def remember(record):
        states[record.epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    result = trainer.fit(
        epoch_batches(train),
        epochs=5,
        make_val_batches=lambda: TensorBatches(val, 64),
        on_epoch=remember,
    )
    scores = [record.score for record in result.history]
    assert result.best_epoch == 1 + max(range(len(scores)), key=scores.__getitem__)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, states[result.best_epoch][key])


def test_same_seed_gives_bitwise_identical_training():
    train = learnable_split(256, 0)
    first, second = make_trainer(seed=3), make_trainer(seed=3)
    for trainer in (first, second):
        trainer.fit(epoch_batches(train, seed=7), epochs=2)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_record_reports_mean_losses_and_applied_weights():
    train = learnable_split(128, 0)
    torch.manual_seed(0)
    trunk = create_backbone("mlp", 1, (8, 8))
    tasks = [ClassificationTask("quadrant", 4), ClassificationTask("level", 3)]
    model = HardSharing(trunk, {t.name: classification_head(128, t.num_classes) for t in tasks})
    trainer = Trainer(
        model,
        tasks,
        create("fixed", lam=0.25),
        torch.optim.SGD(model.parameters(), lr=0.01),
        progress=False,
    )
    record = trainer.fit(epoch_batches(train), epochs=1).history[0]
    assert record.task_weights == {"quadrant": 0.25, "level": 0.75}
    assert all(math.isfinite(v) and v > 0 for v in record.train_loss.values())


def test_divergence_is_reported_with_the_task_named():
    train = learnable_split(128, 0)
    trainer = make_trainer(lr=1e12)
    with pytest.raises(DivergedError, match=r"task\(s\) \[.*'quadrant'.*not finite"):
        trainer.fit(epoch_batches(train), epochs=3)


def test_missing_head_is_refused():
    trainer = make_trainer()
    with pytest.raises(ValueError, match="no head for task"):
        Trainer(trainer.model, [ClassificationTask("colour", 3)], create("ew"), trainer.optimizer)


def test_checkpoints_round_trip_with_weights_only_and_write_atomically(tmp_path):
    trainer = make_trainer()
    state = {"model": trainer.model.state_dict(), "epoch": 3, "config": {"name": "x"}}
    path = tmp_path / "run" / "best.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3
    for key, value in state["model"].items():
        assert torch.equal(loaded["model"][key], value)
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary left


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(truncated, {"model": {"w": torch.ones(1000)}})
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable mtlkit checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an mtlkit checkpoint"):
        load_checkpoint(foreign)
