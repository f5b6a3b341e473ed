"""Pareto fronts, exact hypervolume and the Das-Dennis design."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from mtlkit.evaluation import hypervolume, pareto_front
from mtlkit.evaluation.pareto import das_dennis, dominates, lattice_divisions


def test_hypervolume_of_hand_computed_sets() -> None:
    assert hypervolume([(0, 1), (1, 0)], (2, 2)) == 3.0  # 2·1 + 1·2 − 1·1
    assert hypervolume([(0, 1), (1, 0), (1, 1)], (2, 2)) == 3.0  # a dominated point adds nothing
    assert hypervolume([(0.5, 0.5)], (2, 2)) == 2.25
    assert hypervolume([(0, 3), (3, 0)], (2, 2)) == 0.0  # outside the reference box
    assert hypervolume([], (2, 2)) == 0.0
    assert hypervolume([(1, 1, 1)], (2, 3, 4)) == 6.0
    # Three 3-D corners: boxes of 2·1·1 each, every pair and the triple meet in the unit cube
    # [1, 2]³: by inclusion-exclusion 3·2 − 3·1 + 1 = 4.
    corners = [(0, 1, 1), (1, 0, 1), (1, 1, 0)]
    assert hypervolume(corners, (2, 2, 2)) == 4.0


def _inclusion_exclusion(points: np.ndarray, reference: np.ndarray) -> float:
    """An independent exact hypervolume: Σ over subsets of (−1)^(|S|+1) vol(∩ boxes)."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in combinations(range(len(points)), size):
            corner = points[list(subset)].max(axis=0)
            total += (-1) ** (size + 1) * float(np.prod(np.clip(reference - corner, 0, None)))
    return total


@pytest.mark.parametrize("dims", [2, 3, 4, 5])
def test_hypervolume_equals_inclusion_exclusion(dims: int) -> None:
    rng = np.random.default_rng(dims)
    for _ in range(5):
        points = rng.random((9, dims))
        reference = np.full(dims, 1.1)
        assert hypervolume(points.tolist(), reference.tolist()) == pytest.approx(
            _inclusion_exclusion(points, reference), rel=1e-12
        )


@pytest.mark.slow
def test_hypervolume_in_3d_against_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    points = rng.random((15, 3))
    reference = np.array([1.2, 1.1, 1.0])
    exact = hypervolume(points.tolist(), reference.tolist())
    low = points.min(axis=0)
    samples = 400_000
    draws = low + rng.random((samples, 3)) * (reference - low)
    dominated = np.zeros(samples, dtype=bool)
    for point in points:
        dominated |= (draws >= point).all(axis=1)
    box = float(np.prod(reference - low))
    share = dominated.mean()
    estimate = box * share
    standard_error = box * math.sqrt(share * (1 - share) / samples)
    assert abs(exact - estimate) < 5 * standard_error  # a 5σ miss has probability < 1e-6


def test_pareto_front_on_random_sets() -> None:
    rng = np.random.default_rng(1)
    for dims in (2, 3, 4):
        points = rng.integers(0, 6, size=(40, dims)).tolist()  # ties and duplicates on purpose
        front = pareto_front(points)
        assert front == sorted(front)
        for i, point in enumerate(points):
            dominated = any(dominates(other, point) for other in points)
            assert (i in front) == (not dominated)
        # every point off the front is dominated by a point on it
        for i in set(range(len(points))) - set(front):
            assert any(dominates(points[j], points[i]) for j in front)


def test_pareto_front_keeps_duplicates_and_checks_input() -> None:
    assert pareto_front([(1, 2), (1, 2), (2, 2)]) == [0, 1]
    assert pareto_front([]) == []
    with pytest.raises(ValueError, match="same"):
        pareto_front([(1, 2), (1, 2, 3)])
    with pytest.raises(ValueError, match="finite"):
        pareto_front([(1, math.nan)])
    with pytest.raises(ValueError, match="objectives"):
        hypervolume([(1, 2)], (2, 2, 2))


def test_das_dennis_design() -> None:
    lam = das_dennis(2, 10)  # λ = 1, 0.9, …, 0 for task 1, 1 − λ for task 2
    expected = [(i / 10, 1 - i / 10) for i in range(10, -1, -1)]
    assert [x for v in lam for x in v] == pytest.approx([x for v in expected for x in v])
    for k, h in ((3, 4), (4, 3), (5, 2)):
        design = das_dennis(k, h)
        assert len(design) == math.comb(h + k - 1, k - 1) == len(set(design))
        assert all(math.isclose(sum(v), 1.0) and min(v) >= 0 for v in design)
        assert all(math.isclose(x * h, round(x * h)) for v in design for x in v)
    assert lattice_divisions(2, 11) == 10
    assert lattice_divisions(3, 15) == 4  # C(6, 2) = 15
    assert lattice_divisions(3, 14) == 3  # C(5, 2) = 10
    with pytest.raises(ValueError):
        das_dennis(0, 3)
