"""Which tasks help each other: a grouping of the tasks into networks from their affinity.

The affinity (TAG's Z, measured while training by
:class:`~mtlkit.measure.affinity.TaskAffinityProbe`) is a K×K matrix, ``Z[i][j]`` the effect of
a step on task i on task j's loss.

**Grouping** (TAG's network selection, exhaustively for small K): a partition of the tasks
into groups, one network per group, scores the mean over tasks j of the mean affinity onto j
from the other members of its group, ``(1/(|G|−1)) Σ_{i∈G, i≠j} Z_{i→j}`` (0 for a task alone).
:func:`best_groupings` gives the best partition for each number of networks; the suggestion is
the best of all (fewer networks on ties). TAG also allows a task to sit in several groups; this
chooses among partitions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

MAX_GROUPING_TASKS = 10
"""The most tasks :func:`best_groupings` searches exhaustively (Bell(10) = 115 975 partitions)."""


@dataclass(frozen=True)
class Grouping:
    """A partition of the tasks into groups (one network each) and its total affinity score."""

    groups: tuple[tuple[str, ...], ...]
    score: float


def grouping_score(affinity: Sequence[Sequence[float]], groups: Sequence[Sequence[int]]) -> float:
    """The mean over tasks j of the mean affinity ``Z[i][j]`` onto j from the other members i of
    j's group (0 for a task alone)."""
    total = 0.0
    for group in groups:
        if len(group) > 1:
            for j in group:
                total += sum(affinity[i][j] for i in group if i != j) / (len(group) - 1)
    return total / len(affinity)


def best_groupings(affinity: Sequence[Sequence[float]], names: Sequence[str]) -> list[Grouping]:
    """For each number of networks n = 1 … K, the partition into n groups with the highest
    :func:`grouping_score` (the first found on ties), searched exhaustively.

    Raises:
        ValueError: ``affinity`` is not K×K for the K ``names``, or K > :data:`MAX_GROUPING_TASKS`.
    """
    size = len(names)
    if len(affinity) != size or any(len(row) != size for row in affinity):
        raise ValueError(f"affinity must be {size}×{size}, one row and column per task.")
    if size > MAX_GROUPING_TASKS:
        raise ValueError(
            f"an exhaustive grouping search covers at most {MAX_GROUPING_TASKS} tasks, got {size}."
        )
    best: dict[int, Grouping] = {}
    for partition in _partitions(list(range(size))):
        score = grouping_score(affinity, partition)
        count = len(partition)
        if count not in best or score > best[count].score:
            groups = tuple(tuple(names[i] for i in group) for group in partition)
            best[count] = Grouping(groups, score)
    return [best[count] for count in sorted(best)]


def suggested_grouping(groupings: Sequence[Grouping]) -> Grouping:
    """The best of :func:`best_groupings`' partitions; fewer networks on ties."""
    return max(groupings, key=lambda grouping: (grouping.score, -len(grouping.groups)))


def _partitions(items: list[int]) -> Iterator[list[list[int]]]:
    """Every set partition of ``items`` (the first item's group is built first)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _partitions(rest):
        yield [[first], *partition]
        for index in range(len(partition)):
            yield [*partition[:index], [first, *partition[index]], *partition[index + 1 :]]
