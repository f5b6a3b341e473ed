"""Data pipeline: mtlkit's batching against ``torch.utils.data.DataLoader`` over a per-sample
``Dataset`` (the usual approach), ``num_workers`` 0 and 2.

    python benchmarks/data_pipeline.py [--limit 12800] [--batch 256] [--rounds 5]

One shuffled epoch of the multi-mnist training split (images and both tasks' labels), batches
only, no model: ``TensorBatches`` (one ``index_select`` per tensor per batch) against a
``DataLoader`` whose ``Dataset.__getitem__`` returns one sample and whose default collate stacks
them (workers are started each epoch, as without ``persistent_workers``). Epochs alternate
between the loaders; the figure is the ratio of median epoch times, DataLoader / mtlkit
(the issue's target: ≥ 10).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from timing import add_timing_arguments, interleaved_medians, timing_setup
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mtlkit.data import Split, TensorBatches, load_benchmark


class PerSample(Dataset):
    """One sample at a time: ``(image, {task: label})``."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.split.inputs[index], {t: y[index] for t, y in self.split.targets.items()}


def measure(split: Split, batch: int, rounds: int, clock: Callable[[], float]) -> list[str]:
    """Markdown rows: each DataLoader's median epoch time over mtlkit's."""

    def mtlkit(epoch: int) -> None:
        batches = TensorBatches(split, batch, shuffle=True, seed=0)
        batches.set_epoch(epoch)
        for _ in batches:
            pass

    def loader(workers: int) -> Callable[[int], None]:
        def run(epoch: int) -> None:
            gen = torch.Generator().manual_seed(epoch)
            data = DataLoader(
                PerSample(split), batch, shuffle=True, num_workers=workers, generator=gen
            )
            for _ in data:
                pass

        return run

    runners = {"mtlkit": mtlkit, "DataLoader, 0 workers": loader(0)}
    runners["DataLoader, 2 workers"] = loader(2)
    medians = interleaved_medians(runners, rounds, clock)
    rows = [
        f"| multi-mnist, {len(split)} samples, batch {batch} | DataLoader / mtlkit epoch time |",
        "|---|---|",
    ]
    for name, seconds in medians.items():
        if name != "mtlkit":
            rows.append(f"| {name} | {seconds / medians['mtlkit']:.1f}× |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=12_800, help="training samples used")
    add_timing_arguments(parser)
    args = parser.parse_args()
    clock = timing_setup(args)
    data = load_benchmark("multi-mnist", protocol="sener", seed=0, limit=args.limit)
    print("\n".join(measure(data.train, args.batch, args.rounds, clock)))


if __name__ == "__main__":
    main()
