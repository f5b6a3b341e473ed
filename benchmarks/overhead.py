"""Framework overhead: an mtlkit ``ew`` training epoch against a hand-written PyTorch loop.

    python benchmarks/overhead.py [--backbone lenet] [--rounds 5] [--limit 12800] [--threads 1]

The same network (same initial weights), the same multi-mnist training samples, batch size and
SGD optimizer. The plain loop is what a user writes by hand: a ``randperm`` per epoch, slices by
``index_select``, ``model(x)``, the sum of the task losses, ``backward``, ``step``. The mtlkit
side is the CLI's trainer, ``Trainer.train_epoch`` over ``TensorBatches``, validation excluded.
Epochs alternate (plain, mtlkit, plain, …) so that both see the same machine load; the figure is
the ratio of median epoch times, plain / mtlkit (1.0: no overhead; the issue's target ≥ 0.97).
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timing import add_timing_arguments, interleaved_medians, timing_setup

from mtlkit.balancing import create
from mtlkit.data import Split, TensorBatches, load_benchmark
from mtlkit.models import HardSharing, classification_head, create_backbone
from mtlkit.tasks import ClassificationTask
from mtlkit.training import Trainer


def _template(backbone: str, input_shape: tuple[int, ...], tasks: list[str]) -> HardSharing:
    torch.manual_seed(0)
    trunk = create_backbone(backbone, input_shape)
    heads = {t: classification_head(trunk.out_features, 10) for t in tasks}
    return HardSharing(trunk, heads)


def plain_epoch(
    model: HardSharing, optimizer: torch.optim.Optimizer, split: Split, batch: int, epoch: int
) -> None:
    """One epoch as a hand-written loop would do it."""
    model.train()
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(epoch))
    for start in range(0, len(split), batch):
        index = order[start : start + batch]
        x = split.inputs.index_select(0, index)
        targets = {t: y.index_select(0, index) for t, y in split.targets.items()}
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = sum(F.cross_entropy(out[t], y) for t, y in targets.items())
        loss.backward()
        optimizer.step()


def mtlkit_epoch(trainer: Trainer, split: Split, batch: int, epoch: int) -> None:
    """One epoch through the CLI's trainer."""
    batches = TensorBatches(split, batch, shuffle=True, seed=0)
    batches.set_epoch(epoch)
    trainer.train_epoch(batches, epoch)


def measure(
    split: Split, backbone: str, batch: int, rounds: int, clock: Callable[[], float]
) -> dict[str, float]:
    """Median epoch time of the plain loop and of mtlkit (with and without channels-last)."""
    tasks = list(split.targets)
    template = _template(backbone, tuple(split.inputs.shape[1:]), tasks)
    plain_model = copy.deepcopy(template)
    plain_optimizer = torch.optim.SGD(plain_model.parameters(), lr=0.05, momentum=0.9)
    runners: dict[str, Callable[[int], None]] = {
        "plain": lambda e: plain_epoch(plain_model, plain_optimizer, split, batch, e)
    }
    for label, channels_last in (("mtlkit", False), ("mtlkit channels-last", True)):
        model = copy.deepcopy(template)
        trainer = Trainer(
            model,
            [ClassificationTask(t, 10) for t in tasks],
            create("ew"),
            torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
            channels_last=channels_last,
            progress=False,
        )
        runners[label] = lambda e, trainer=trainer: mtlkit_epoch(trainer, split, batch, e)
    return interleaved_medians(runners, rounds, clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="lenet")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=12_800, help="training samples used")
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    data = load_benchmark("multi-mnist", protocol="sener", seed=0, limit=args.limit)
    medians = measure(data.train, args.backbone, args.batch, args.rounds, clock)
    plain = medians["plain"]
    print(f"| {args.backbone}, batch {args.batch}, {len(data.train)} samples | plain / mtlkit |")
    print("|---|---|")
    for name, seconds in medians.items():
        if name != "plain":
            print(f"| {name} | {plain / seconds:.3f} |")


if __name__ == "__main__":
    main()
