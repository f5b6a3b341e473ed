"""Screen training recipes for the demo: a plain PyTorch loop (no mtlkit trainer) on MultiMNIST
(Sener & Koltun's protocol), equal weighting of the two tasks or one task alone, the test
accuracy after each epoch and the seconds each epoch's training took.

    MTLKIT_DATA=/path/to/data python benchmarks/demo_recipes.py [--trunk seed|s2|s2s2|wide-s2]
        [--batch-norm] [--epochs 3] [--lr 0.1] [--batch 256] [--optimizer sgd|nesterov|adamw]
        [--schedule epoch-cosine|step-cosine|onecycle|none] [--tasks both|left|right]
        [--task-fc]

How `configs/multi-mnist.yaml`'s recipe was chosen (docs/results.md, "The demo's recipe"): one
seed, the same initial weights and data order for every recipe; timings are ratios only when
two recipes ran on the same machine at the same load. ``seed`` is the seed CNN's shape (conv 32,
pool, conv 64, pool, fc 256); ``s2`` replaces the first pool by a stride-2 5×5 convolution,
``s2s2`` both pools by stride-2 convolutions, ``wide-s2`` is ``s2`` at 1.5× the channels;
``--task-fc`` moves the trunk's fully connected layer (with its batch norm) into each task's head
(both heads start from copies of the same weights).
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch
import torch.nn.functional as F
from timing import machine
from torch import nn

from mtlkit.data import load_benchmark

TASKS = ("left", "right")


def _conv(cin: int, cout: int, kernel: int, batch_norm: bool, *, stride: int = 1, pool: bool):
    """A convolution, then max-pool (if asked), batch norm (if asked) and ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm)
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    return [*layers, nn.ReLU(inplace=True)]


def trunk(name: str, batch_norm: bool) -> nn.Sequential:
    """The trunk ``name`` for 28×28 images, ending in 256 features."""
    shapes = {  # (first conv's channels and kernel and stride, second conv's channels and stride)
        "seed": ((32, 3, 1), (64, 1)),
        "s2": ((32, 5, 2), (64, 1)),
        "s2s2": ((32, 5, 2), (64, 2)),
        "wide-s2": ((48, 5, 2), (96, 1)),
    }
    (c1, k1, s1), (c2, s2) = shapes[name]
    body = [
        *_conv(1, c1, k1, batch_norm, stride=s1, pool=s1 == 1),
        *_conv(c1, c2, 3, batch_norm, stride=s2, pool=s2 == 1),
    ]
    fc = nn.Linear(c2 * 7 * 7, 256, bias=not batch_norm)
    norm = [nn.BatchNorm1d(256)] if batch_norm else []
    return nn.Sequential(*body, nn.Flatten(), fc, *norm, nn.ReLU(inplace=True))


def shared_fc_start(trunk_: nn.Sequential) -> int:
    """The index of the trunk's fully connected layer (the module after ``Flatten``)."""
    return next(i for i, layer in enumerate(trunk_) if isinstance(layer, nn.Flatten)) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trunk", choices=("seed", "s2", "s2s2", "wide-s2"), default="seed")
    parser.add_argument("--batch-norm", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--optimizer", choices=("sgd", "nesterov", "adamw"), default="sgd")
    parser.add_argument(
        "--schedule",
        choices=("epoch-cosine", "step-cosine", "onecycle", "none"),
        default="epoch-cosine",
    )
    parser.add_argument("--tasks", choices=("both", *TASKS), default="both")
    parser.add_argument(
        "--task-fc",
        action="store_true",
        help="the fully connected 256-unit layer in each task's head instead of the trunk",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(machine(), flush=True)

    data = load_benchmark("multi-mnist", protocol="sener", seed=0, val_fraction=0.1)
    mean, std = data.train.inputs.mean(), data.train.inputs.std()
    inputs, test_inputs = ((x - mean) / std for x in (data.train.inputs, data.test.inputs))
    trained = [k for k, task in enumerate(TASKS) if args.tasks in ("both", task)]

    torch.manual_seed(0)
    shared = trunk(args.trunk, args.batch_norm)
    if args.task_fc:
        cut = shared_fc_start(shared)
        fc_layers, shared = list(shared[cut:]), shared[:cut]
        heads = nn.ModuleList(
            nn.Sequential(*(copy.deepcopy(fc_layers) if k else fc_layers), nn.Linear(256, 10))
            for k in range(len(TASKS))
        )
    else:
        heads = nn.ModuleList(nn.Linear(256, 10) for _ in TASKS)
    model = nn.ModuleDict({"trunk": shared, "heads": heads}).to(memory_format=torch.channels_last)
    params = list(model.parameters())
    if args.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=args.lr)
    else:
        optimizer = torch.optim.SGD(
            params, lr=args.lr, momentum=0.9, nesterov=args.optimizer == "nesterov"
        )
    steps = args.epochs * math.ceil(len(inputs) / args.batch)
    per_step = {
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=args.lr, total_steps=steps, pct_start=0.25
        ),
        "step-cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps),
    }.get(args.schedule, lambda: None)()
    per_epoch = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
        if args.schedule == "epoch-cosine"
        else None
    )

    order = torch.Generator().manual_seed(0)
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.perf_counter()
        for batch in torch.randperm(len(inputs), generator=order).split(args.batch):
            features = model["trunk"](inputs[batch])
            loss = sum(
                F.cross_entropy(model["heads"][k](features), data.train.targets[TASKS[k]][batch])
                for k in trained
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_step is not None:
                per_step.step()
        if per_epoch is not None:
            per_epoch.step()
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            features = torch.cat([model["trunk"](x) for x in test_inputs.split(2000)])
            accuracy = [
                (model["heads"][k](features).argmax(1) == data.test.targets[task]).float().mean()
                for k, task in enumerate(TASKS)
            ]
        shown = "  ".join(f"{TASKS[k]} {float(accuracy[k]):.4f}" for k in trained)
        print(f"epoch {epoch}: {seconds:.1f} s, test accuracy {shown}", flush=True)


if __name__ == "__main__":
    main()
