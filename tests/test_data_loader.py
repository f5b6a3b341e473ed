"""Mini-batching from memory: coverage, determinism, sharding."""

from __future__ import annotations

import pytest
import torch

from mtlkit.data import DataError, Split, TensorBatches


def _split(size: int) -> Split:
    """Inputs and targets that spell out each sample's index."""
    index = torch.arange(size)
    return Split(
        inputs=index.to(torch.float32).view(size, 1, 1, 1).expand(size, 1, 2, 2).clone(),
        targets={"id": index.clone(), "double": 2 * index},
    )


def _epoch(batches: TensorBatches) -> list[int]:
    seen = []
    for batch in batches:
        assert torch.equal(batch.inputs[:, 0, 0, 0].long(), batch.targets["id"])
        assert torch.equal(batch.targets["double"], 2 * batch.targets["id"])
        seen += batch.targets["id"].tolist()
    return seen


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_once_per_epoch(shuffle):
    batches = TensorBatches(_split(23), 5, shuffle=shuffle, seed=3)
    assert len(batches) == 5
    for epoch in range(3):
        batches.set_epoch(epoch)
        seen = _epoch(batches)
        assert sorted(seen) == list(range(23))
        assert (seen == list(range(23))) != shuffle
    assert [len(batch) for batch in batches] == [5, 5, 5, 5, 3]


def test_order_is_a_function_of_seed_and_epoch():
    def order(seed: int, epoch: int) -> list[int]:
        batches = TensorBatches(_split(40), 8, shuffle=True, seed=seed)
        batches.set_epoch(epoch)
        return _epoch(batches)

    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1)
    assert order(1, 0) != order(2, 0)
    batches = TensorBatches(_split(40), 8, shuffle=True, seed=1)
    batches.set_epoch(1)
    assert _epoch(batches) == _epoch(batches) == order(1, 1)


@pytest.mark.parametrize(("size", "world_size"), [(24, 3), (26, 4)])
def test_shards_are_disjoint_equal_and_each_step_is_one_big_batch(size, world_size):
    """Step i of the N ranks at batch B serves exactly the samples of step i of one process at
    batch N·B (what makes N processes equal one): equal, disjoint shards of the epoch's order."""
    ranks = []
    for rank in range(world_size):
        batches = TensorBatches(
            _split(size), 2, shuffle=True, seed=5, rank=rank, world_size=world_size
        )
        batches.set_epoch(2)
        ranks.append([batch.targets["id"].tolist() for batch in batches])
    order = TensorBatches(_split(size), 4, shuffle=True, seed=5)
    order.set_epoch(2)
    expected = order.indices()[: size - size % world_size].split(2 * world_size)
    assert all(len(steps) == len(expected) for steps in ranks)
    for step, want in enumerate(expected):
        got = [index for steps in ranks for index in steps[step]]
        assert len(got) == len(set(got)) and sorted(got) == sorted(want.tolist())


def test_evaluation_shards_serve_every_sample_once():
    shards = [
        TensorBatches(_split(26), 4, rank=rank, world_size=4, even_shards=False).indices()
        for rank in range(4)
    ]
    assert sorted(torch.cat(shards).tolist()) == list(range(26))
    assert {len(shard) for shard in shards} == {6, 7}


def test_drop_last():
    batches = TensorBatches(_split(23), 5, drop_last=True)
    assert len(batches) == 4
    assert _epoch(batches) == list(range(20))
    assert len(TensorBatches(_split(20), 5, drop_last=True)) == 4
    assert len(TensorBatches(_split(20), 5)) == 4
    assert len(TensorBatches(_split(3), 5, drop_last=True)) == 0


def test_device_and_bad_arguments():
    batch = next(iter(TensorBatches(_split(4), 2, device="cpu")))
    assert batch.inputs.device.type == "cpu" and batch.targets["id"].device.type == "cpu"
    with pytest.raises(DataError, match="batch_size"):
        TensorBatches(_split(4), 0)
    with pytest.raises(DataError, match="rank"):
        TensorBatches(_split(4), 2, rank=2, world_size=2)


def test_masks_travel_with_their_rows():
    """A task's label mask is sliced like its targets; a task without one has none."""
    split = _split(10)
    split = Split(split.inputs, split.targets, {"double": split.targets["id"] % 3 == 0})
    for batch in TensorBatches(split, 4, shuffle=True, seed=2):
        assert set(batch.masks) == {"double"}
        assert torch.equal(batch.masks["double"], batch.targets["id"] % 3 == 0)
        moved = batch.to("cpu", torch.channels_last)
        assert moved.inputs.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(moved.masks["double"], batch.masks["double"])


@pytest.mark.parametrize(
    ("masks", "message"),
    [
        ({"other": torch.ones(4, dtype=torch.bool)}, "no targets"),
        ({"id": torch.ones(4)}, "bool tensor"),
        ({"id": torch.ones(3, dtype=torch.bool)}, r"\(4,\) bool"),
    ],
)
def test_bad_masks_are_refused(masks, message):
    split = _split(4)
    with pytest.raises(DataError, match=message):
        Split(split.inputs, split.targets, masks)


def test_subset_keeps_the_masks_of_the_kept_tasks():
    split = _split(4)
    split = Split(split.inputs, split.targets, {"id": torch.tensor([True, False, True, True])})
    assert Split.subset(split, ["id"]).masks.keys() == {"id"}
    assert split.subset(["double"]).masks == {}
