"""Training across processes (gloo on loopback): N processes at batch B equal one at batch N·B,
and every process applies the same update and keeps the same balancer state."""

from __future__ import annotations

import pytest
import torch

from mtlkit.balancing import create
from mtlkit.data import Split, TensorBatches
from mtlkit.models import HardSharing, classification_head, create_backbone
from mtlkit.tasks import ClassificationTask
from mtlkit.training import Trainer, create_optimizer, process_group
from processes import run_group

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METHODS = ["ew", "mgda", "upgrad", "pcgrad", "famo", "dwa", "nash-mtl"]
"""The issue's list: loss weightings with and without state, Gramian and projection methods."""
MORE = ["gradnorm", "uw", "mgda-ub", "gradvac", "moco", "rlw", "stch"]
"""Every other kind of state or path: learnt weights, the representation shortcut, seeded
draws, tracked gradients, warm-up epochs."""
BATCH, EPOCHS, STEPS = 8, 3, 2
"""Per-process batch; 3 epochs of 2 steps: 6 steps, and epoch-level methods (DWA) change their
weights within them."""
WORLD = 2


def _split(masked: bool) -> Split:
    """WORLD·BATCH·STEPS samples of 8×8 images, two tasks; ``masked``: ``level`` is labelled on
    a third of the rows, unevenly across the ranks' shards."""
    n = WORLD * BATCH * STEPS
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 8, 8, generator=g)
    targets = {
        "quadrant": torch.randint(0, 4, (n,), generator=g),
        "level": torch.randint(0, 3, (n,), generator=g),
    }
    masks = {"level": torch.arange(n) % 3 == 0} if masked else {}
    return Split(images, targets, masks)


def _train(method: str, masked: bool, rank: int, world: int, replicas) -> dict:
    """Train from a fixed start; the parameters and the balancer state at the end."""
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (1, 8, 8))
    tasks = [ClassificationTask("quadrant", 4), ClassificationTask("level", 3)]
    heads = {t.name: classification_head(trunk.out_features, t.num_classes) for t in tasks}
    model = HardSharing(trunk, heads)
    balancer = create(method, num_tasks=2, **({"warmup_epochs": 1} if method == "stch" else {}))
    optimizer = create_optimizer("sgd", model.parameters(), balancer.parameters(), lr=0.1)
    trainer = Trainer(model, tasks, balancer, optimizer, progress=False, replicas=replicas)
    split = _split(masked)

    def batches(epoch: int) -> TensorBatches:
        loader = TensorBatches(
            split, BATCH * WORLD // world, shuffle=True, seed=3, rank=rank, world_size=world
        )
        loader.set_epoch(epoch)
        return loader

    trainer.fit(batches, EPOCHS)
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "balancer": balancer.state_dict(),
    }


CASES = [(method, False) for method in METHODS + MORE] + [("ew", True), ("upgrad", True)]


def _rank(rank: int, folder) -> None:
    with process_group(torch.device("cpu")) as replicas:
        assert replicas is not None and replicas.size == WORLD
        results = {case: _train(*case, rank, WORLD, replicas) for case in CASES}
    torch.save(results, folder / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Every case trained by 2 processes at batch B (one process group for all of them)."""
    folder = tmp_path_factory.mktemp("ddp")
    assert run_group(_rank, WORLD, folder) == [0] * WORLD
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize(("method", "masked"), CASES)
def test_two_processes_at_batch_b_equal_one_at_batch_2b(two_processes, method, masked):
    """To 1e-6 (float32 sums in another order), for every method, label masks included (each
    rank's masked loss is weighted by its share of the labelled rows)."""
    one = _train(method, masked, 0, 1, None)
    for got in two_processes:
        torch.testing.assert_close(
            got[(method, masked)]["params"], one["params"], rtol=0, atol=1e-6
        )


@pytest.mark.parametrize(("method", "masked"), CASES)
def test_every_process_applies_the_same_update_and_keeps_the_same_state(
    two_processes, method, masked
):
    """Bit for bit: the replicas' decisions come from replica means, and seeded methods draw
    the same numbers on every rank."""
    first, second = (ranks[(method, masked)] for ranks in two_processes)
    torch.testing.assert_close(first["params"], second["params"], rtol=0, atol=0)
    torch.testing.assert_close(first["balancer"], second["balancer"], rtol=0, atol=0)
