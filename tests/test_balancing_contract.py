"""The contract every registered balancing method keeps (parametrised over ``available()``).

A method added to ``mtlkit.balancing.methods`` is covered here automatically: the real training
loop (``Trainer.train_step`` / ``train_epoch`` on a small hard-sharing network) runs it for one and
several steps and epochs with finite losses, resumes it exactly from its ``state_dict``, steps its
own parameters with the optimizer; it names an unknown option, and — for a gradient aggregator —
leaves a common gradient's direction alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import mtlkit.balancing
from balancing_checks import assert_resumes_exactly
from mtlkit.balancing import Balancer, GradientAggregator, available, create, method_class
from mtlkit.data import Split, TensorBatches
from mtlkit.models import HardSharing, classification_head, create_backbone
from mtlkit.tasks import ClassificationTask
from mtlkit.training import Trainer

K = 3
TASKS = [ClassificationTask(f"t{k}", num_classes=4) for k in range(K)]
METHODS = [info.name for info in available()]
REQUIRED_OPTIONS: dict[str, dict] = {"fixed": {"weights": [1.0, 2.0, 0.5]}}
"""Options a method has no default for."""
BATCH = 12

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _create(name: str) -> Balancer:
    return create(name, num_tasks=K, **REQUIRED_OPTIONS.get(name, {}))


def _model(seed: int) -> HardSharing:
    """The small hard-sharing network every test here trains: built in this one place."""
    torch.manual_seed(seed)
    trunk = create_backbone("mlp", (1, 6, 6))
    heads = {task.name: classification_head(trunk.out_features, task.num_classes) for task in TASKS}
    return HardSharing(trunk, heads)


def _trainer(name: str, seed: int = 0) -> Trainer:
    """The training loop with ``name``'s balancer and SGD over the model's and its parameters."""
    model = _model(seed)
    balancer = _create(name)
    optimizer = torch.optim.SGD([*model.parameters(), *balancer.parameters()], lr=0.05)
    return Trainer(model, TASKS, balancer, optimizer, progress=False)


def _split(step: int, samples: int = BATCH) -> Split:
    gen = torch.Generator().manual_seed(1000 + step)
    inputs = torch.randn(samples, 1, 6, 6, generator=gen)
    targets = {task.name: torch.randint(0, 4, (samples,), generator=gen) for task in TASKS}
    return Split(inputs, targets)


def _batch(step: int):
    """Batch ``step`` exactly as the data pipeline hands it to the trainer."""
    return next(iter(TensorBatches(_split(step), BATCH)))


def _epoch(epoch: int) -> TensorBatches:
    """A one-batch epoch for ``Trainer.train_epoch``, which ends it with ``epoch_end``."""
    return TensorBatches(_split(100 + epoch), BATCH)


def _step(trainer: Trainer, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    torch.manual_seed(123)  # the global RNG is the trainer's to checkpoint, not the method's
    return trainer.train_step(_batch(step))


def _check_step(name: str, losses: torch.Tensor, weights: torch.Tensor | None) -> None:
    assert losses.shape == (K,) and torch.isfinite(losses).all(), f"{name}: losses {losses}"
    if weights is not None:
        assert weights.shape == (K,) and torch.isfinite(weights).all(), f"{name}: {weights}"
        assert not weights.requires_grad


class _Checkpoint(nn.Module):
    """What a checkpoint of the loop holds: the model and the balancer (plain SGD keeps no
    state of its own); ``trainer`` runs them."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__()
        self.model, self.balancer, self.trainer = trainer.model, trainer.balancer, trainer


def _step_then_weights(run: _Checkpoint, step: int):
    """A step after resuming: the losses and weights it reports and the parameters it leaves."""
    losses, weights = _step(run.trainer, step)
    if step == 0:  # the second epoch ends: DWA's weights leave 1 from here on
        run.balancer.epoch_end()
    return losses, weights, [p.detach().clone() for p in run.model.parameters()]


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_trains_steps_and_epochs_and_resumes_exactly_from_its_state_dict(name):
    trainer = _trainer(name, seed=1)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    _check_step(name, *_step(trainer, 0))  # one step
    for (pname, p), old in zip(trainer.model.named_parameters(), before):
        assert p.grad is not None, f"{name} left {pname} without a gradient"
        assert torch.isfinite(p.grad).all(), f"{name} gave {pname} a non-finite gradient"
        assert not torch.equal(p.detach(), old), f"{name}: the optimizer did not move {pname}"
    _check_step(name, *trainer.train_epoch(_epoch(0), 0))  # an epoch, ended by epoch_end
    _check_step(name, *_step(trainer, 1))  # stop in the middle of the next epoch
    resumed = _Checkpoint(_trainer(name, seed=99))
    assert_resumes_exactly(_Checkpoint(trainer), resumed, _step_then_weights, steps=2)


WITH_PARAMETERS = [name for name in METHODS if list(_create(name).parameters())]


def test_some_methods_have_parameters_of_their_own():
    assert WITH_PARAMETERS, "no registered method has parameters: the next test checks nothing"


@pytest.mark.parametrize("name", WITH_PARAMETERS)
def test_its_own_parameters_are_stepped_by_the_optimizer(name):
    trainer = _trainer(name)
    before = [p.detach().clone() for p in trainer.balancer.parameters()]
    _step(trainer, 0)
    for p, old in zip(trainer.balancer.parameters(), before):
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert not torch.equal(p.detach(), old), f"{name}'s own parameters did not move"


@pytest.mark.parametrize("name", METHODS)
def test_an_unknown_option_is_named(name):
    with pytest.raises(ValueError, match="no_such_option"):
        create(name, num_tasks=K, no_such_option=1, **REQUIRED_OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", METHODS)
def test_has_the_one_line_summary_that_mtlkit_methods_prints(name):
    summary = mtlkit.balancing.describe(name).summary
    assert summary.strip() and "\n" not in summary


AGGREGATORS = [n for n in METHODS if issubclass(method_class(n), GradientAggregator)]


@pytest.mark.parametrize("name", AGGREGATORS)
def test_identical_task_gradients_keep_their_direction(name):
    cls = method_class(name)
    if not getattr(cls, "keeps_common_direction", True):
        pytest.skip(f"{name} declares keeps_common_direction = False (see its docstring)")
    gen = torch.Generator().manual_seed(7)
    g = torch.randn(50, generator=gen)
    jacobian = g.repeat(K, 1)
    losses = torch.tensor([0.9, 1.3, 0.4])
    balancer = _create(name)
    for _ in range(2):  # a second call sees any state the first one left
        result = balancer.aggregate(jacobian, losses)
        assert result.shape == g.shape and torch.isfinite(result).all()
        coefficient = result @ g / (g @ g)
        assert coefficient >= -1e-6, f"{name} reversed a gradient all tasks agree on"
        torch.testing.assert_close(result, coefficient * g, rtol=0, atol=1e-4 * g.norm())


def test_the_package_imports_every_method_module():
    """``create`` knows a method only if ``mtlkit.balancing`` imports its module: every module of
    ``mtlkit.balancing.methods`` (but the private helpers) is in that import list and registers
    at least one method."""
    package = Path(mtlkit.balancing.__file__).parent
    modules = {p.stem for p in (package / "methods").glob("*.py") if not p.stem.startswith("_")}
    listed = set()
    for node in ast.walk(ast.parse((package / "__init__.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "mtlkit.balancing.methods":
            listed.update(alias.name for alias in node.names)
    assert listed == modules
    registered = {method_class(name).__module__.rsplit(".", 1)[-1] for name in METHODS}
    assert registered == modules
