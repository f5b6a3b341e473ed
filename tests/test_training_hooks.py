"""The loop's hooks: a user's own hook, every hook's state in the checkpoint by construction, and
what each built-in hook promises (a resumed run equals an uninterrupted one; a skipped step
leaves the model as it was; probes never change the update; selection says when it cannot
rank an epoch)."""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import pytest
import torch
from torch import nn

from mtlkit.balancing import create
from mtlkit.data import Split, TensorBatches
from mtlkit.measure.affinity import TaskAffinityProbe
from mtlkit.models import HardSharing, classification_head, create_backbone
from mtlkit.tasks import ClassificationTask
from mtlkit.training import (
    CheckpointError,
    EMATeacher,
    FitProgress,
    Hook,
    InputNoise,
    ParameterPenalties,
    Penalty,
    StepState,
    Trainer,
    create_optimizer,
)
from mtlkit.training.hooks.precision import PrecisionHook

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS_PER_EPOCH = 8


class _PoisonedAt(ClassificationTask):
    """A task whose loss is NaN at its ``at``-th call (1-based)."""

    def __init__(self, name: str, num_classes: int, at: int) -> None:
        super().__init__(name, num_classes)
        self.at, self.calls = at, 0

    def loss(self, output, target, mask=None, **extra):
        self.calls += 1
        loss = super().loss(output, target, mask, **extra)
        return loss * torch.nan if self.calls == self.at else loss


def _tasks() -> list[ClassificationTask]:
    return [ClassificationTask("a", 3), ClassificationTask("b", 2)]


def _trainer(
    tasks=None, balancer: str = "ew", *, mlp: dict | None = None, techniques: bool = False, **kw
) -> Trainer:
    """A small MLP trainer; ``techniques``: with noise, an EMA teacher, L2 penalties and task
    cosines (every stateful built-in hook)."""
    tasks = tasks or _tasks()
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (1, 4, 4), **(mlp or {}))
    heads = {t.name: classification_head(trunk.out_features, t.num_classes) for t in tasks}
    model = HardSharing(trunk, heads)
    bal = create(balancer, num_tasks=len(tasks))
    optimizer = create_optimizer("sgd", model.parameters(), bal.parameters(), lr=0.1)
    if techniques:
        kw.setdefault("noise", InputNoise(gaussian=0.1))
        kw.setdefault("teachers", [EMATeacher(model, ["a"], 0.9)])
        groups = {"trunk": list(model.shared_parameters())}
        kw.setdefault("penalties", ParameterPenalties(groups, {"trunk": Penalty(l2=0.01)}))
        kw.setdefault("task_cosine_every", 3)
    return Trainer(model, tasks, bal, optimizer, progress=False, **kw)


def _split(n: int = 64, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(
        torch.rand(n, 1, 4, 4, generator=g),
        {"a": torch.randint(0, 3, (n,), generator=g), "b": torch.randint(0, 2, (n,), generator=g)},
    )


def _batches(epoch: int) -> TensorBatches:
    loader = TensorBatches(_split(), 64 // STEPS_PER_EPOCH, shuffle=True, seed=1)
    loader.set_epoch(epoch)
    return loader


def _val() -> TensorBatches:
    return TensorBatches(_split(32, seed=5), 16)


# ---------------------------------------------------------------- a user's hook


class _LossesSeen(Hook):
    """Keeps the reported losses of every applied step (and saves them)."""

    name = "losses-seen"

    def __init__(self) -> None:
        self.seen: list[list[float]] = []

    def after_update(self, step: StepState) -> None:
        assert step.reported is not None
        self.seen.append(step.reported.tolist())

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = list(state["seen"])


def test_a_user_hook_sees_every_applied_step_and_changes_nothing():
    plain = _trainer()
    plain_result = plain.fit(_batches, 2)
    hook = _LossesSeen()
    hooked = _trainer(hooks=[hook])
    result = hooked.fit(_batches, 2)
    assert len(hook.seen) == 2 * STEPS_PER_EPOCH
    torch.testing.assert_close(hooked.model.state_dict(), plain.model.state_dict(), rtol=0, atol=0)
    assert [r.train_loss for r in result.history] == [r.train_loss for r in plain_result.history]
    mean_a = sum(losses[0] for losses in hook.seen[:STEPS_PER_EPOCH]) / STEPS_PER_EPOCH
    assert math.isclose(mean_a, result.history[0].train_loss["a"], rel_tol=1e-6)


def test_hooks_need_names_of_their_own():
    with pytest.raises(ValueError, match="name of its own"):
        _trainer(hooks=[_LossesSeen(), _LossesSeen()])


# ---------------------------------------------------------------- state by construction


def _fingerprint(value: Any, seen: set[int]) -> Any:
    """What ``value`` holds, as comparable plain values: tensors, generators' states, numbers,
    containers and the attributes of objects, recursively (functions and methods left out)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().cpu().double().tolist())
    if isinstance(value, torch.Generator):
        return ("generator", value.get_state().tolist())
    if isinstance(value, nn.Module):
        return {key: _fingerprint(v, seen) for key, v in value.state_dict().items()}
    if isinstance(value, torch.optim.Optimizer):
        return _fingerprint(value.state_dict(), seen)
    if value is None or isinstance(value, (bool, int, float, str)):
        return "nan" if isinstance(value, float) and math.isnan(value) else value
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v, seen) for v in value]
    if isinstance(value, dict):
        return {key: _fingerprint(v, seen) for key, v in value.items()}
    if inspect.isroutine(value) or isinstance(value, type) or id(value) in seen:
        return type(value).__name__
    seen.add(id(value))
    attributes = getattr(value, "__dict__", None)
    if attributes is None:
        return type(value).__name__
    return (type(value).__name__, {key: _fingerprint(v, seen) for key, v in attributes.items()})


def unsaved_hook_state(make_trainer, train) -> list[str]:
    """The hooks of ``make_trainer()`` that hold something (tensors, counters, generators, …)
    that ``train(trainer)`` changes and a checkpoint round trip does not bring back: a fresh
    trainer loading the trained one's :meth:`Trainer.state_dict` must hold the same."""
    trained = make_trainer()
    train(trained)
    fresh = make_trainer()
    fresh.load_state_dict(copy.deepcopy(trained.state_dict(FitProgress())))
    return [
        hook.name
        for hook, restored in zip(trained.hooks, fresh.hooks, strict=True)
        if _fingerprint(hook, set()) != _fingerprint(restored, set())
    ]


def _two_epochs(trainer: Trainer) -> None:
    trainer.fit(_batches, 2, lambda: _val())


def test_every_registered_hook_saves_what_training_changes():
    """Every built-in hook (noise, teacher, penalties, cosines, an affinity probe, the guard in
    skip mode, …) and a user's hook: what training changed in them comes back from the
    checkpoint."""

    def make() -> Trainer:
        probe = TaskAffinityProbe(["a", "b"], 4)
        return _trainer(techniques=True, probes=[probe], on_nonfinite="skip", hooks=[_LossesSeen()])

    names = {hook.name for hook in make().hooks}
    assert {"noise", "teachers", "penalties", "probes", "nonfinite", "losses-seen"} <= names
    assert unsaved_hook_state(make, _two_epochs) == []


class _ForgetfulCounter(Hook):
    """Counts steps and saves nothing: what the check must catch."""

    name = "forgetful"

    def __init__(self) -> None:
        self.steps = 0
        self.last = torch.zeros(2)

    def after_step(self, step: StepState, progress: FitProgress) -> None:
        self.steps += 1
        assert step.reported is not None
        self.last = step.reported.clone()


def test_the_check_catches_a_hook_that_saves_nothing():
    make = lambda: _trainer(hooks=[_ForgetfulCounter()])  # noqa: E731
    assert unsaved_hook_state(make, _two_epochs) == ["forgetful"]


def test_a_checkpoint_without_hook_states_is_refused_clearly():
    trainer = _trainer()
    state = trainer.state_dict(FitProgress())
    assert state is not None
    old = {key: value for key, value in state.items() if key != "hooks"}
    with pytest.raises(
        CheckpointError,
        match="^this checkpoint was written by an mtlkit whose training loop did not save",
    ):
        _trainer().load_state_dict(old)


def test_a_checkpoint_without_a_stateful_hooks_state_is_refused_clearly():
    state = _trainer().state_dict(FitProgress())
    assert state is not None
    with pytest.raises(CheckpointError, match="no state of the hook 'losses-seen'"):
        _trainer(hooks=[_LossesSeen()]).load_state_dict(state)


# ---------------------------------------------------------------- resume


def _record(record) -> dict:
    fields = dict(vars(record))
    fields.pop("seconds")
    fields.pop("step_seconds")
    return fields


@pytest.mark.slow
@pytest.mark.parametrize("at", [3, STEPS_PER_EPOCH + 5])
def test_a_resumed_fit_records_what_the_uninterrupted_one_did(at):
    """Noise, an EMA teacher, L2 penalties, task cosines: stopped at step ``at`` (mid-epoch),
    resumed in a fresh trainer from the checkpoint, the records (penalties, cosines, losses),
    the cosine samples and the weights equal the uninterrupted run's."""
    reference = _trainer(techniques=True)
    expected = reference.fit(_batches, 3, _val)
    saved: dict[str, Any] = {}

    def checkpoint(progress: FitProgress) -> None:
        if progress.global_step == at:
            saved.update(copy.deepcopy(interrupted.state_dict(progress)))

    interrupted = _trainer(techniques=True)
    interrupted.fit(_batches, 3, _val, checkpoint=checkpoint, checkpoint_every=1)
    resumed = _trainer(techniques=True)
    progress = resumed.load_state_dict(saved)
    assert progress.global_step == at
    got = resumed.fit(_batches, 3, _val, progress=progress)
    assert [_record(r) for r in got.history] == [_record(r) for r in expected.history]
    assert got.task_cosines == expected.task_cosines
    torch.testing.assert_close(
        resumed.model.state_dict(), reference.model.state_dict(), rtol=0, atol=0
    )


# ---------------------------------------------------------------- skip


def test_a_skipped_step_leaves_batchnorm_running_statistics_as_they_were():
    tasks = [ClassificationTask("a", 3), _PoisonedAt("b", 2, at=3)]
    trainer = _trainer(tasks, mlp={"batch_norm": True}, on_nonfinite="skip")
    batches = list(_batches(1))
    for batch in batches[:2]:
        trainer.train_step(batch)
    norms = [m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert norms
    before = copy.deepcopy(trainer.model.state_dict())
    trainer.train_step(batches[2])  # NaN: skipped
    torch.testing.assert_close(trainer.model.state_dict(), before, rtol=0, atol=0)
    trainer.train_step(batches[3])  # a good step moves them again
    assert not torch.equal(norms[0].running_mean, before["trunk.2.running_mean"])


def test_an_fp16_overflow_puts_the_balancers_state_back():
    """The loss scale's overflow path (driven directly: fp16 runs on CUDA only): the update is
    refused, the scale halves, and the balancer's state (DWA's loss history) is as before the
    step."""
    trainer = _trainer(balancer="dwa")
    for batch in list(_batches(1))[:3]:
        trainer.train_step(batch)
    hook = PrecisionHook("fp16", torch.device("cpu"), trainer.model, trainer.balancer)
    assert hook.loss_scale is not None
    step = StepState(1, 1, next(iter(_batches(1))), None)
    hook.before_step(step)
    before = copy.deepcopy(trainer.balancer.state_dict())
    losses = [torch.tensor(1.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)]
    trainer.balancer.backward(losses, shared_params=list(trainer.model.shared_parameters()))
    changed = trainer.balancer.state_dict()
    assert any(not torch.equal(changed[k], before[k]) for k in before if torch.is_tensor(before[k]))
    for param in trainer.model.parameters():
        param.grad = torch.full_like(param, torch.inf)
    scale = hook.loss_scale.scale
    assert hook.allow_update(step) is False
    assert hook.loss_scale.scale == scale / 2
    torch.testing.assert_close(trainer.balancer.state_dict(), before, rtol=0, atol=0)
    restored = PrecisionHook("fp16", torch.device("cpu"), trainer.model, trainer.balancer)
    restored.load_state_dict(hook.state_dict())
    assert restored.loss_scale is not None and restored.loss_scale.scale == scale / 2


# ---------------------------------------------------------------- probes


def test_probes_never_change_the_update_even_with_dropout():
    """The affinity probe's look-ahead runs the model in train mode; with dropout it draws
    masks, which must not shift the training's own draws."""
    plain = _trainer(mlp={"dropout": 0.5})
    plain.fit(_batches, 1)
    probe = TaskAffinityProbe(["a", "b"], 2)
    probed = _trainer(mlp={"dropout": 0.5}, probes=[probe], task_cosine_every=3)
    probed.fit(_batches, 1)
    assert len(probe.steps) == STEPS_PER_EPOCH // 2
    torch.testing.assert_close(probed.model.state_dict(), plain.model.state_dict(), rtol=0, atol=0)


# ---------------------------------------------------------------- selection


class _Unrankable(ClassificationTask):
    """A task whose selection value is undefined (as AUROC on a one-label validation split)."""

    def selection_value(self, report) -> float:
        return math.nan


def test_a_nan_validation_score_is_named_and_the_last_epoch_kept():
    trainer = _trainer([_Unrankable("a", 3), _Unrankable("b", 2)])
    with pytest.warns(UserWarning) as caught:
        result = trainer.fit(_batches, 2, _val)
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 2
    for epoch, message in enumerate(messages, 1):
        assert message.startswith(f"epoch {epoch}: the validation score is NaN")
        assert "keeps the last epoch" in message
    assert result.best_epoch == 2 and result.best_score is None
    assert all(math.isnan(record.score) for record in result.history)
