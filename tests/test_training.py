"""The training loop: it learns, selects on validation, is deterministic, and saves safely."""

from __future__ import annotations

import io
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
    create_optimizer,
    create_scheduler,
    load_checkpoint,
    save_checkpoint,
)
from mtlkit.training.finite import gradients_finite

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _state_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


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


def make_trainer(
    seed: int = 0,
    lr: float = 0.1,
    balancer: str = "ew",
    *,
    backbone: str = "mlp",
    channels_last: bool = False,
    weight_decay: float = 0.0,
    schedule: str = "none",
    label_smoothing: float = 0.0,
) -> Trainer:
    """The trainer the CLI would build: model and balancer parameters in one optimizer."""
    torch.manual_seed(seed)
    trunk = create_backbone(backbone, (1, 8, 8))
    tasks = [
        ClassificationTask("quadrant", 4, label_smoothing),
        ClassificationTask("level", 3, label_smoothing),
    ]
    heads = {t.name: classification_head(trunk.out_features, t.num_classes) for t in tasks}
    model = HardSharing(trunk, heads)
    bal = create(balancer, num_tasks=2)
    optimizer = create_optimizer(
        "sgd", model.parameters(), bal.parameters(), lr=lr, weight_decay=weight_decay
    )
    scheduler = create_scheduler(schedule, optimizer, epochs=4, step_size=1, gamma=0.5)
    return Trainer(
        model, tasks, bal, optimizer, scheduler, channels_last=channels_last, progress=False
    )


def epoch_batches(split: Split, seed: int = 0):
    def make(epoch: int) -> TensorBatches:
        loader = TensorBatches(split, 32, shuffle=True, seed=seed)
        loader.set_epoch(epoch)
        return loader

    return make


@pytest.mark.slow
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
    trunk = create_backbone("mlp", (1, 8, 8))
    tasks = [ClassificationTask("quadrant", 4), ClassificationTask("level", 3)]
    heads = {t.name: classification_head(trunk.out_features, t.num_classes) for t in tasks}
    model = HardSharing(trunk, heads)
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


@pytest.mark.slow
@pytest.mark.parametrize("balancer", ["upgrad", "mgda-ub", "dwa", "uw", "famo", "pcgrad"])
def test_gradient_and_stateful_balancers_train_through_the_loop(balancer):
    """Aggregators (through the engine), the representation path, and stateful methods (whose
    state changes every step or every epoch) all learn through the real loop."""
    train, test = learnable_split(256, 0), learnable_split(128, 1)
    trainer = make_trainer(balancer=balancer, lr=0.05)
    before = _state_bytes(trainer.balancer)
    history = trainer.fit(epoch_batches(train), epochs=6).history
    for task in ("quadrant", "level"):  # both tasks learn (level is the slow one)
        assert history[-1].train_loss[task] < 0.95 * history[0].train_loss[task]
    assert trainer.evaluate(TensorBatches(test, 128))["quadrant"].accuracy > 0.9  # chance: 0.25
    if trainer.balancer.state_dict():  # a stateful method's state moved
        assert _state_bytes(trainer.balancer) != before


def test_epoch_end_is_called_once_per_epoch():
    trainer = make_trainer(balancer="dwa")
    calls = []
    original = trainer.balancer.epoch_end
    trainer.balancer.epoch_end = lambda: (calls.append(1), original())[1]
    trainer.fit(epoch_batches(learnable_split(64, 0)), epochs=3)
    assert len(calls) == 3


def test_balancer_parameters_are_stepped_but_not_weight_decayed():
    """Uncertainty weighting's log-variances are loss weights, not network weights: with a huge
    weight decay the model's weights shrink, the log-variances move by their gradient alone."""
    trainer = make_trainer(balancer="uw", lr=0.01, weight_decay=10.0)
    log_vars = next(trainer.balancer.parameters())
    start = log_vars.detach().clone()
    batch = next(iter(TensorBatches(learnable_split(32, 0), 32)))
    trainer.train_step(batch)
    grad = log_vars.grad.detach().clone()
    assert not torch.equal(log_vars.detach(), start)
    torch.testing.assert_close(log_vars.detach(), start - 0.01 * grad)  # plain SGD, no decay
    groups = trainer.optimizer.param_groups
    assert groups[0]["weight_decay"] == 10.0 and groups[1]["weight_decay"] == 0.0
    assert any(p is log_vars for p in groups[1]["params"])


def test_channels_last_conv_trunk_with_an_aggregator_matches_contiguous():
    """The default CLI layout (channels-last convolutions) gives the same training as the plain
    layout, through an aggregator's per-task Jacobian."""
    train = learnable_split(64, 0)
    runs = []
    for channels_last in (False, True):
        trainer = make_trainer(balancer="upgrad", backbone="cnn", channels_last=channels_last)
        trainer.fit(epoch_batches(train), epochs=1)
        runs.append(trainer.model.state_dict())
    for key in runs[0]:
        torch.testing.assert_close(runs[1][key].contiguous(), runs[0][key], rtol=1e-4, atol=1e-5)


def test_the_schedule_steps_once_per_epoch_and_is_logged():
    trainer = make_trainer(schedule="step", lr=0.2)
    history = trainer.fit(epoch_batches(learnable_split(64, 0)), epochs=3).history
    assert [round(record.lr, 6) for record in history] == [0.2, 0.1, 0.05]
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


def test_label_smoothing_reaches_the_loss_of_the_loop():
    batch = next(iter(TensorBatches(learnable_split(32, 0), 32)))
    trainer = make_trainer(label_smoothing=0.2)
    with torch.no_grad():
        outputs = trainer.model(batch.inputs)
    expected = [
        torch.nn.functional.cross_entropy(outputs[t], batch.targets[t], label_smoothing=0.2)
        for t in ("quadrant", "level")
    ]
    losses, _ = trainer.train_step(batch)
    torch.testing.assert_close(losses, torch.stack(expected))


def test_masked_rows_train_only_the_tasks_they_are_labelled_for():
    """A row without a ``level`` label still trains ``quadrant``; the ``level`` head gets the
    gradient of the labelled rows only (the loss is their mean), and evaluation skips the rest."""
    split = learnable_split(32, 0)
    labelled = torch.arange(32) % 2 == 0
    masked = Split(split.inputs, split.targets, {"level": labelled})
    batch = next(iter(TensorBatches(masked, 32)))
    only_labelled = next(
        iter(
            TensorBatches(
                Split(
                    split.inputs[labelled],
                    {
                        "quadrant": split.targets["quadrant"][labelled],
                        "level": split.targets["level"][labelled],
                    },
                ),
                16,
            )
        )
    )
    first, second = make_trainer(), make_trainer()
    first.train_step(batch)
    second.train_step(only_labelled)
    level_head = [p.grad for p in first.model.task_parameters("level")]
    expected = [p.grad for p in second.model.task_parameters("level")]
    for got, want in zip(level_head, expected):
        torch.testing.assert_close(got, want)
    quadrant_head = [p.grad for p in first.model.task_parameters("quadrant")]
    assert all(g is not None and bool(g.abs().sum() > 0) for g in quadrant_head)
    reports = first.evaluate(TensorBatches(masked, 8))
    assert sum(reports["level"].support) == 16 and sum(reports["quadrant"].support) == 32


def test_evaluation_losses_are_the_mean_over_labelled_rows():
    """The test loss of a task is its loss over every labelled row, whatever the batching; a
    task with no labelled row has none (NaN)."""
    split = learnable_split(30, 1)
    labelled = torch.arange(30) % 3 != 0
    masked = Split(split.inputs, split.targets, {"level": labelled, "quadrant": labelled & False})
    trainer = make_trainer()
    reports, losses = trainer.evaluate_with_losses(TensorBatches(masked, 7))
    trainer.model.eval()
    with torch.no_grad():
        outputs = trainer.model(split.inputs)
    expected = torch.nn.functional.cross_entropy(
        outputs["level"][labelled], split.targets["level"][labelled]
    )
    assert losses["level"] == pytest.approx(float(expected), rel=1e-6)
    assert math.isnan(losses["quadrant"]) and sum(reports["level"].support) == 20


@pytest.mark.parametrize(
    "poison",
    [
        {"at": (0, 5), "value": math.nan},
        {"at": (1, 0), "value": math.inf},
        {"at": (1, 3), "value": -math.inf},
        {"at": (0, 0), "value": math.inf, "also": [((1, 1), -math.inf)]},  # their sum is NaN
    ],
)
def test_a_non_finite_entry_anywhere_makes_the_gradients_non_finite(poison):
    params = [torch.zeros(4, 8, requires_grad=True), torch.zeros(6, requires_grad=True)]
    for p in params:
        p.grad = torch.randn_like(p)
    assert bool(gradients_finite(params, torch.device("cpu")))
    for (which, index), value in [(poison["at"], poison["value"]), *poison.get("also", ())]:
        params[which].grad.view(-1)[index] = value
    assert not bool(gradients_finite(params, torch.device("cpu")))


def test_gradients_without_any_grad_are_finite():
    params = [torch.zeros(3, requires_grad=True)]
    assert bool(gradients_finite(params, torch.device("cpu")))
