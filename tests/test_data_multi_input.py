"""Multi-input batching: one batch per task and step; what an epoch is; nothing truncated."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from mtlkit.data import DataError, MultiInputBatches, Split, TaskByTaskBatches


def _split(task: str, size: int) -> Split:
    """Inputs and targets that spell out each sample's index."""
    index = torch.arange(size)
    return Split(index.float().unsqueeze(1), {task: index.clone()})


SIZES = {"a": 23, "b": 10, "c": 5}


def _splits(sizes=SIZES) -> dict[str, Split]:
    return {task: _split(task, size) for task, size in sizes.items()}


def _epoch(batches: MultiInputBatches) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {task: [] for task in batches.splits}
    for batch in batches:
        assert set(batch.inputs) == set(batches.splits) == set(batch.targets)
        for task, inputs in batch.inputs.items():
            assert torch.equal(inputs[:, 0].long(), batch.targets[task])  # rows stay aligned
            seen[task] += batch.targets[task].tolist()
    return seen


def test_longest_visits_every_sample_of_every_task_each_epoch():
    """The longest task once per epoch; shorter ones recycled, freshly shuffled, each sample
    as often as any other (up to one) and at least once."""
    batches = MultiInputBatches(_splits(), 4, seed=1)
    assert len(batches) == 6  # ceil(23 / 4)
    for epoch in range(3):
        batches.set_epoch(epoch)
        seen = _epoch(batches)
        assert sorted(seen["a"]) == list(range(23))
        for task, size in SIZES.items():
            counts = Counter(seen[task])
            assert set(counts) == set(range(size))
            assert max(counts.values()) - min(counts.values()) <= 1
        assert len(seen["b"]) == len(seen["c"]) == 6 * 4  # recycled tasks draw full batches


def test_the_order_is_a_function_of_seed_and_epoch():
    def order(seed: int, epoch: int) -> dict[str, list[int]]:
        batches = MultiInputBatches(_splits(), 4, seed=seed)
        batches.set_epoch(epoch)
        return _epoch(batches)

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1) and order(1, 0) != order(2, 0)


@pytest.mark.parametrize(("policy", "steps"), [("shortest", 2), (3, 3)])
def test_shortest_and_fixed_steps_truncate_nothing_across_epochs(policy, steps):
    """An epoch of ``steps`` steps; every task's stream carries on across epochs, so over many
    epochs each sample of a task is drawn as often as any other (up to one)."""
    batches = MultiInputBatches(_splits(), 4, epoch=policy, seed=0)
    assert len(batches) == steps
    stream: dict[str, list[int]] = {task: [] for task in SIZES}
    for epoch in range(12):
        batches.set_epoch(epoch)
        for task, seen in _epoch(batches).items():
            assert len(seen) == steps * 4
            stream[task] += seen
    for task, size in SIZES.items():
        counts = Counter(stream[task])
        assert set(counts) == set(range(size))
        assert max(counts.values()) - min(counts.values()) <= 1


def test_proportional_mixing_sizes_batches_by_task_size():
    batches = MultiInputBatches(_splits(), 4, mixing="proportional")
    # 3 · 4 = 12 samples a step, shared 23 : 10 : 5 of 38
    assert batches.batch_sizes == {"a": 7, "b": 3, "c": 2}
    assert len(batches) == 4 and batches.passes == {"a": 4, "b": 4, "c": 3}


def test_ranks_take_disjoint_equal_shards_of_every_pass():
    shards = []
    for rank in range(2):
        batches = MultiInputBatches(_splits(), 3, seed=5, rank=rank, world_size=2)
        batches.set_epoch(1)
        shards.append(_epoch(batches))
    assert len(shards[0]["a"]) == len(shards[1]["a"]) == 11  # 23 // 2, one pass
    assert not set(shards[0]["a"]) & set(shards[1]["a"])
    for task in SIZES:
        assert not set(shards[0][task][: SIZES[task] // 2]) & set(
            shards[1][task][: SIZES[task] // 2]
        )


def test_evaluation_batches_go_task_after_task_over_each_split_once():
    seen: dict[str, list[int]] = {}
    loader = TaskByTaskBatches(_splits(), 4)
    for batch in loader:
        (task,) = batch.inputs
        assert set(batch.targets) == {task}
        seen.setdefault(task, []).extend(batch.targets[task].tolist())
    assert seen == {task: list(range(size)) for task, size in SIZES.items()}
    assert len(loader) == 6 + 3 + 2


def test_bad_options_are_refused():
    with pytest.raises(DataError, match="'longest', 'shortest' or a positive number"):
        MultiInputBatches(_splits(), 4, epoch="all")
    with pytest.raises(DataError, match="mixing 'random'"):
        MultiInputBatches(_splits(), 4, mixing="random")
    with pytest.raises(DataError, match="fewer samples than the 8 processes"):
        MultiInputBatches(_splits(), 4, rank=0, world_size=8)
