"""mtlkit in Lightning: a Lightning ``Trainer`` with a gradient method takes the steps of mtlkit's
own loop (float32 and bf16-mixed), logs each task's loss, weight and metrics, and two Lightning
DDP processes (gloo) at batch B take the steps of one process at batch 2B."""

from __future__ import annotations

import os

import pytest
import torch

from mtlkit.balancing import create
from mtlkit.data import Split, TensorBatches
from mtlkit.models import classification_head, create_backbone, create_model
from mtlkit.tasks import ClassificationTask, RegressionTask
from mtlkit.training import Trainer, create_optimizer
from processes import run_group

pl = pytest.importorskip("lightning.pytorch", reason="the lightning extra: mtlkit[lightning]")
from mtlkit.lightning import MultiTaskModule  # noqa: E402 - after the extra's check

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

ROWS, FEATURES, BATCH, EPOCHS = 32, 6, 8, 2
"""A small table: 32 rows of 6 features, 4 steps of 8 rows per epoch, 2 epochs."""


def _table() -> Split:
    """Features, a 3-way plan and a spend (labelled on two rows in three), seeded."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, FEATURES, generator=g)
    plan = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    spend = x[:, 2:4].sum(1) + 0.1 * torch.randn(ROWS, generator=g)
    return Split(x, {"plan": plan, "spend": spend}, {"spend": torch.arange(ROWS) % 3 != 0})


def _parts(method: str = "upgrad", sharing: str = "mmoe"):
    """The model, tasks and balancer from a fixed start."""
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (FEATURES,), hidden=(16,))
    tasks = [ClassificationTask("plan", 3), RegressionTask("spend")]
    heads = {t.name: classification_head(trunk.out_features, t.output_size) for t in tasks}
    model = create_model(sharing, trunk, heads, (FEATURES,))
    return model, tasks, create(method, num_tasks=2)


def _batches(batch: int = BATCH, rank: int = 0, world: int = 1) -> TensorBatches:
    return TensorBatches(_table(), batch, rank=rank, world_size=world)


def _mtlkit_loop(precision: str = "fp32") -> dict[str, torch.Tensor]:
    model, tasks, balancer = _parts()
    optimizer = create_optimizer("sgd", model.parameters(), balancer.parameters(), lr=0.1)
    trainer = Trainer(model, tasks, balancer, optimizer, progress=False, precision=precision)
    trainer.fit(lambda epoch: _batches(), EPOCHS)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _lightning(module: MultiTaskModule, tmp_path, **options) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        **{"devices": 1, **options},
    )
    return trainer


def _lightning_run(tmp_path, precision: str = "32-true", **options) -> dict[str, torch.Tensor]:
    model, tasks, balancer = _parts()
    module = MultiTaskModule(model, tasks, balancer, "sgd", lr=0.1)
    _lightning(module, tmp_path, precision=precision, **options).fit(module, _batches())
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_lightning_with_upgrad_takes_the_steps_of_mtlkits_loop(tmp_path):
    """Bit for bit: the same seed, batches and step (manual optimization runs mtlkit's step;
    Lightning adds no backward pass and no optimizer step of its own)."""
    expected = _mtlkit_loop()
    start = dict(_parts()[0].named_parameters())
    got = _lightning_run(tmp_path)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.equal(got["heads.plan.weight"], start["heads.plan.weight"])  # it trained


def test_bf16_mixed_is_mtlkits_bf16(tmp_path):
    """Lightning's bf16-mixed equals mtlkit's bf16 (the forward under bf16 autocast, the
    balancer in float32) bit for bit, and differs from float32: autocast really ran."""
    expected = _mtlkit_loop("bf16")
    got = _lightning_run(tmp_path, "bf16-mixed")
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    float32 = _mtlkit_loop()
    assert any(not torch.equal(got[name], float32[name]) for name in got)


def test_each_tasks_loss_weight_and_metrics_are_logged(tmp_path):
    model, tasks, balancer = _parts(sharing="hard")
    module = MultiTaskModule(model, tasks, balancer, "adam", lr=0.01)
    trainer = _lightning(module, tmp_path)
    trainer.fit(module, _batches(), val_dataloaders=_batches())
    logged = trainer.logged_metrics
    for name in ("plan", "spend"):
        assert torch.isfinite(logged[f"train/loss/{name}"])
    weights = logged["train/weight/plan"] + logged["train/weight/spend"]
    assert weights > 0  # UPGrad's weights of the task gradients
    assert 0 <= logged["val/plan/accuracy"] <= 1 and logged["val/spend/rmse"] > 0


def test_options_lightning_sets_and_precisions_it_cannot_are_refused(tmp_path):
    model, tasks, balancer = _parts()
    with pytest.raises(ValueError, match="precision of the step come from Lightning"):
        MultiTaskModule(model, tasks, balancer, precision="bf16")
    module = MultiTaskModule(model, tasks, balancer)
    with pytest.raises(ValueError, match="precision '64-true' is not one MultiTaskModule"):
        _lightning(module, tmp_path, precision="64-true").fit(module, _batches())


def _rank(rank: int, folder) -> None:
    """One of two Lightning DDP processes (started as torchrun would, gloo on the CPU)."""
    os.environ["TORCHELASTIC_RUN_ID"] = "mtlkit-lightning-test"  # Lightning reads torchrun's
    model, tasks, balancer = _parts()
    module = MultiTaskModule(model, tasks, balancer, "sgd", lr=0.1)
    strategy = pl.strategies.DDPStrategy(process_group_backend="gloo")
    trainer = _lightning(module, folder, devices=2, strategy=strategy)
    trainer.fit(module, _batches(BATCH // 2, rank, 2))
    assert trainer.world_size == 2 and trainer.global_rank == rank
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    torch.save(params, folder / f"rank{rank}.pt")


def test_two_lightning_ddp_processes_at_batch_b_equal_one_at_batch_2b(tmp_path):
    """To 1e-6, as mtlkit's own DDP: the gradients are float32 sums over the rows in another
    order (two halves averaged instead of one mean), a relative 2⁻²⁴ per addition over a few
    steps of lr 0.1 on order-one parameters; every process keeps the same parameters bit for
    bit. The per-task gradients are averaged over the processes before UPGrad reads them."""
    assert run_group(_rank, 2, tmp_path) == [0, 0]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    torch.testing.assert_close(ranks[0], ranks[1], rtol=0, atol=0)
    one = _lightning_run(tmp_path / "one")
    torch.testing.assert_close(ranks[0], one, rtol=0, atol=1e-6)
