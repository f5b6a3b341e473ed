"""Training across processes (gloo on loopback): N processes at batch B equal one at batch N·B,
and every process applies the same update and keeps the same balancer state — with label masks,
and with one dataset per task."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from mtlkit.balancing import create
from mtlkit.data import MultiInputBatches, Split, TensorBatches
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
PEERS = ["sdmgrad", "modo", "excess-mtl", "cr-mogm", "pcd", "cosmos", "pbi", "upgrad/layers"]
"""Issue 23's methods that are defined at K = 2 (Krum and the trimmed mean need 3 tasks), and
UPGrad on the layer-wise Gramian path (each layer's per-task rows averaged before their Gramian)."""
OPTIONS = {
    "stch": ("stch", {"warmup_epochs": 1}),
    "upgrad/layers": ("upgrad", {"gramian_path": "layers"}),
}
"""Cases that are not a method with its defaults: the method's name and its options."""
BATCH, EPOCHS, STEPS = 8, 3, 2
"""Per-process batch; 3 epochs of 2 steps: 6 steps, and epoch-level methods (DWA) change their
weights within them."""
WORLD = 2


DATA = ("plain", "masked", "multi-input")
"""One split for both tasks; the same with ``level`` labelled on a third of the rows (unevenly
across the ranks' shards); one split per task (each step a batch of each)."""


def _split(masked: bool, seed: int = 0) -> Split:
    """WORLD·BATCH·STEPS samples of 8×8 images, two tasks; ``masked``: ``level`` is labelled on
    a third of the rows."""
    n = WORLD * BATCH * STEPS
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 8, 8, generator=g)
    targets = {
        "quadrant": torch.randint(0, 4, (n,), generator=g),
        "level": torch.randint(0, 3, (n,), generator=g),
    }
    masks = {"level": torch.arange(n) % 3 == 0} if masked else {}
    return Split(images, targets, masks)


def _batches(data: str, epoch: int, rank: int, world: int) -> TensorBatches | MultiInputBatches:
    """The epoch's batches of this rank: BATCH·WORLD/world samples (of each task)."""
    size, shards = BATCH * WORLD // world, {"rank": rank, "world_size": world}
    loader: TensorBatches | MultiInputBatches
    if data == "multi-input":
        splits = {
            task: Split(split.inputs, {task: split.targets[task]})
            for task, split in (("quadrant", _split(False, 1)), ("level", _split(False, 2)))
        }
        loader = MultiInputBatches(splits, size, seed=3, **shards)
    else:
        loader = TensorBatches(_split(data == "masked"), size, shuffle=True, seed=3, **shards)
    loader.set_epoch(epoch)
    return loader


def _trainer(method: str, replicas) -> Trainer:
    """A trainer of the two tasks from a fixed start."""
    torch.manual_seed(0)
    trunk = create_backbone("mlp", (1, 8, 8))
    tasks = [ClassificationTask("quadrant", 4), ClassificationTask("level", 3)]
    heads = {t.name: classification_head(trunk.out_features, t.num_classes) for t in tasks}
    model = HardSharing(trunk, heads)
    name, options = OPTIONS.get(method, (method, {}))
    balancer = create(name, num_tasks=2, **options)
    optimizer = create_optimizer("sgd", model.parameters(), balancer.parameters(), lr=0.1)
    return Trainer(model, tasks, balancer, optimizer, progress=False, replicas=replicas)


def _train(method: str, data: str, rank: int, world: int, replicas) -> dict:
    """Train from a fixed start; the parameters and the balancer state at the end."""
    trainer = _trainer(method, replicas)
    trainer.fit(lambda epoch: _batches(data, epoch, rank, world), EPOCHS)
    return {
        "params": {k: v.detach().clone() for k, v in trainer.model.named_parameters()},
        "balancer": trainer.balancer.state_dict(),
    }


CASES = [(method, "plain") for method in METHODS + MORE + PEERS] + [
    (method, data) for data in DATA[1:] for method in ("ew", "upgrad")
]


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


@pytest.mark.slow
@pytest.mark.parametrize(("method", "data"), CASES)
def test_two_processes_at_batch_b_equal_one_at_batch_2b(two_processes, method, data):
    """To 1e-6 (float32 sums in another order), for every method, label masks included (each
    rank's masked loss is weighted by its share of the labelled rows), one dataset per task
    included (each rank takes every other sample of each task's order)."""
    one = _train(method, data, 0, 1, None)
    for got in two_processes:
        torch.testing.assert_close(got[(method, data)]["params"], one["params"], rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "data"), CASES)
def test_every_process_applies_the_same_update_and_keeps_the_same_state(
    two_processes, method, data
):
    """Bit for bit: the replicas' decisions come from replica means, and seeded methods draw
    the same numbers on every rank."""
    first, second = (ranks[(method, data)] for ranks in two_processes)
    torch.testing.assert_close(first["params"], second["params"], rtol=0, atol=0)
    torch.testing.assert_close(first["balancer"], second["balancer"], rtol=0, atol=0)


def _free_before_leaving(rank: int) -> None:
    gc.disable()  # only the code under test collects
    freed_in_group: list[bool] = []
    with process_group(torch.device("cpu")) as replicas:
        released, dropped = _trainer("ew", replicas), _trainer("ew", replicas)
        for trainer in (released, dropped):
            trainer.fit(lambda epoch: _batches("plain", epoch, rank, WORLD), 1)
        wrappers = [o for o in gc.get_objects() if isinstance(o, DistributedDataParallel)]
        assert len(wrappers) == 2
        for wrapper in wrappers:
            weakref.finalize(wrapper, lambda: freed_in_group.append(dist.is_initialized()))
        del wrappers, wrapper
        released.release_replicas()
        assert freed_in_group == [True] and released.replicas is None
        dropped.itself = dropped  # in a reference cycle: only the garbage collector frees it
        del dropped, trainer
        assert freed_in_group == [True]
    assert freed_in_group == [True, True]


@pytest.mark.slow
def test_ddp_wrappers_are_freed_before_the_process_group_is_destroyed():
    """DDP's reducer holds the process group: freed after the group's destruction (when its
    frame ends, or by the garbage collector), it would destroy the group while holding the GIL
    that torch's gloo workers may still need (a hang at exit, seen under load).
    ``release_replicas`` frees a live trainer's wrapper at once, and ``process_group`` collects
    unreachable ones before it destroys the group."""
    assert run_group(_free_before_leaving, WORLD) == [0] * WORLD
