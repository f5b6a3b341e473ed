"""Mixed precision in the training loop: every balancing method takes a step under bf16 autocast
on CPU with a BatchNorm trunk, and its update is what the method makes of the float32 Jacobian.

The reference of each step is computed from the same network and batch under the same autocast:
the float32 Jacobian ``J`` of the shared parameters (:func:`~mtlkit.balancing.task_jacobian`) and
the method's own result on it (a copy of the balancer, the same random state). The training step
must apply exactly that (the engine runs outside autocast, so the Jacobian, the Gramian and the
solvers are float32/float64), up to the rounding of ``wᵀJ`` written one parameter at a time:
``2γ·Σⱼ|wⱼ|‖gⱼ‖`` with ``γ = (P + K)·u₃₂`` (:mod:`balancing_checks`). The named promises
(UPGrad's and DualProj's non-conflict, MGDA's common descent) are then checked on the float32
Gramian with the bounds of ``test_balancing_guarantees``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from balancing_checks import combination_mass, rounding_gamma
from mtlkit.balancing import Balancer, GramianWeighting, available, create
from mtlkit.balancing.engine import task_jacobian
from mtlkit.balancing.engine.accumulate import wide_gramian
from mtlkit.balancing.types import Need
from mtlkit.config import ConfigError, parse_config
from mtlkit.data import Batch, Split, TensorBatches
from mtlkit.measure.precision import autocast_context, check_precision
from mtlkit.models import HardSharing, classification_head
from mtlkit.tasks import ClassificationTask
from mtlkit.training import Trainer
from mtlkit.training.precision import LossScale

K = 3
TASKS = [ClassificationTask(f"t{k}", num_classes=4) for k in range(K)]
METHODS = [info.name for info in available()]
REQUIRED_OPTIONS: dict[str, dict] = {"fixed": {"weights": [1.0, 2.0, 0.5]}}
NO_CONFLICT = {"upgrad", "dualproj", "mgda"}
DIRECTION_RTOL = 1.5e-6
"""The interior point's direction accuracy (as in ``test_balancing_guarantees``)."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class BatchNormTrunk(nn.Module):
    """A user trunk with BatchNorm: conv → BatchNorm2d → ReLU → flatten → linear → BatchNorm1d."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 4, 3, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, 16, bias=False),
            nn.BatchNorm1d(16),
            nn.ReLU(),
        )
        self.out_features = 16

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _model() -> HardSharing:
    torch.manual_seed(0)
    heads = {t.name: classification_head(16, t.num_classes) for t in TASKS}
    return HardSharing(BatchNormTrunk(), heads)


def _batch() -> Batch:
    gen = torch.Generator().manual_seed(5)
    split = Split(
        torch.randn(16, 1, 6, 6, generator=gen),
        {t.name: torch.randint(0, 4, (16,), generator=gen) for t in TASKS},
    )
    return next(iter(TensorBatches(split, 16)))


def _reference(model: HardSharing, balancer: Balancer, batch: Batch) -> tuple[Tensor, Tensor]:
    """The float32 Jacobian of this step and what the method makes of it (on copies), from the
    float64 Gramian the engine computes."""
    model = copy.deepcopy(model).train()
    with autocast_context("bf16", torch.device("cpu")):
        features = model.encode(batch.inputs)
        outputs = model.decode(features)
        losses = [t.loss(outputs[t.name], batch.targets[t.name]).float() for t in TASKS]
    jacobian = task_jacobian(losses, model.shared_parameters(), features)
    method = copy.deepcopy(balancer)
    torch.manual_seed(11)
    with torch.no_grad():
        stacked = torch.stack(losses).detach()
        if isinstance(method, GramianWeighting):
            return jacobian, method.weights_from_gramian(wide_gramian(jacobian), stacked)
        return jacobian, method.aggregate(jacobian, stacked)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_steps_under_bf16_autocast_with_batch_norm(name):
    model = _model()
    balancer = create(name, num_tasks=K, **REQUIRED_OPTIONS.get(name, {}))
    # lr 0: the step leaves the gradients it applied in .grad and the weights where they were
    optimizer = torch.optim.SGD([*model.parameters(), *balancer.parameters()], lr=0.0)
    trainer = Trainer(model, TASKS, balancer, optimizer, precision="bf16", progress=False)
    batch = _batch()
    jacobian, reference = (None, None)
    if balancer.needs >= Need.GRAMIAN and not getattr(balancer, "on_features", False):
        jacobian, reference = _reference(model, balancer, batch)
    torch.manual_seed(11)
    losses, weights = trainer.train_step(batch)

    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, f"{name}: {pname}"
        assert torch.isfinite(p.grad).all(), f"{name} gave {pname} a non-finite gradient"
    for norm in (model.trunk.layers[1], model.trunk.layers[5]):
        assert norm.running_mean.dtype == torch.float32 and torch.isfinite(norm.running_var).all()
        assert norm.weight.grad.abs().sum() > 0, f"{name}: no gradient reached the BatchNorm"
    if jacobian is None:
        return

    assert jacobian.dtype == torch.float32
    direction = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
    gamma = rounding_gamma(jacobian)
    if weights is None:  # the method maps J itself: the engine writes its result as it is
        torch.testing.assert_close(direction, reference, rtol=0, atol=0)
        return
    torch.testing.assert_close(weights, reference.to(weights.dtype), rtol=0, atol=0)
    mass = combination_mass(weights, jacobian)
    torch.testing.assert_close(
        direction, weights.to(jacobian.dtype) @ jacobian, rtol=0, atol=2 * gamma * mass
    )
    if name in NO_CONFLICT:  # cos(gₖ, d) ≥ 0 on the float32 Gramian's solution
        true, d = jacobian.double(), direction.double()
        cos = (true @ d) / (true.norm(dim=1) * d.norm())
        assert float(cos.min()) >= -(4 * gamma * mass / float(d.norm()) + DIRECTION_RTOL)


def test_the_loss_scale_changes_no_gradient_and_skips_an_overflow():
    """A power-of-two scale at the heads' outputs: unscaled, the gradients are those of no scale
    (bit for bit); an infinite gradient clears them, skips the step and halves the scale."""
    batch = _batch()
    plain, scaled = _model(), _model()
    scale = LossScale(init=2.0**10, growth_interval=2)
    for model, apply in ((plain, lambda o: o), (scaled, scale.apply)):
        outputs = apply(model(batch.inputs))
        sum(t.loss(outputs[t.name], batch.targets[t.name]) for t in TASKS).backward()
    assert scale.unscale(scaled)
    for p, q in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=0)
    scale.update()
    scale.update()
    assert scale.scale == 2.0**11  # two clean steps: doubled
    next(scaled.parameters()).grad[0] = float("inf")
    assert not scale.unscale(scaled)
    assert all(p.grad is None for p in scaled.parameters())
    scale.update()
    assert scale.scale == 2.0**10


def test_precision_errors_name_the_key_and_the_fix():
    with pytest.raises(ValueError, match=r"train.precision 'fp16'.*CUDA|use 'bf16'"):
        check_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="train.precision must be one of fp32, bf16, fp16"):
        check_precision("half", "cpu")
    model = _model()
    with pytest.raises(ValueError, match="use 'bf16'"):
        Trainer(
            model,
            TASKS,
            create("upgrad"),
            torch.optim.SGD(model.parameters(), lr=0.1),
            precision="fp16",
            device="cuda" if torch.cuda.is_available() else "cpu",
        )


def test_the_config_refuses_fp16_off_cuda_and_unknown_precisions():
    with pytest.raises(ConfigError, match="'fp16' runs on cuda only.*use 'bf16'"):
        parse_config({"train": {"precision": "fp16", "device": "cpu"}})
    with pytest.raises(ConfigError, match="train.precision: must be one of: fp32, bf16, fp16"):
        parse_config({"train": {"precision": "half"}})
    assert parse_config({"train": {"precision": "bf16"}}).train.precision == "bf16"


def test_bf16_evaluation_scores_float32_outputs():
    """Evaluation runs the forward pass under the same autocast; metrics read float32 outputs."""
    model = _model()
    trainer = Trainer(
        model,
        TASKS,
        create("ew"),
        torch.optim.SGD(model.parameters(), lr=0.1),
        precision="bf16",
        progress=False,
    )
    reports = trainer.evaluate([_batch()])
    for report in reports.values():
        assert 0.0 <= report.summary()["accuracy"] <= 1.0 and report.num_samples == 16
