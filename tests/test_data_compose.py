"""Image composition of the Sener and ParetoMTL protocols, against slow reference versions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtlkit.data import DataError
from mtlkit.data.benchmarks.compose import (
    draw_partners,
    nearest_indices,
    pareto_images,
    sener_images,
)


def sener_reference(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One pair, written out pixel by pixel."""
    canvas = [[0] * 36 for _ in range(36)]
    for r in range(28):
        for c in range(28):
            canvas[r][c] = int(left[r, c])
    for r in range(28):
        for c in range(28):
            canvas[r + 6][c + 6] = max(canvas[r + 6][c + 6], int(right[r, c]))
    out = np.zeros((28, 28), dtype=np.uint8)
    for y in range(28):
        for x in range(28):
            out[y, x] = canvas[math.floor((y + 0.5) * 36 / 28)][math.floor((x + 0.5) * 36 / 28)]
    return out


def pareto_reference(top_left: np.ndarray, bottom_right: np.ndarray, shifts) -> np.ndarray:
    """One pair, written out pixel by pixel; fails if an item leaves the canvas."""
    a, b, c, d = (int(s) for s in shifts)
    canvas = np.zeros((36, 36), dtype=np.uint8)
    for item, (row0, col0) in ((top_left, (a, b)), (bottom_right, (8 - c, 8 - d))):
        for r in range(28):
            for col in range(28):
                y, x = row0 + r, col0 + col
                assert 0 <= y < 36 and 0 <= x < 36
                canvas[y, x] = max(canvas[y, x], item[r, col])
    return canvas


def test_nearest_indices_match_pixel_centre_formula():
    for source, target in [(36, 28), (28, 36), (10, 3), (7, 7)]:
        expected = [math.floor((d + 0.5) * source / target) for d in range(target)]
        assert nearest_indices(source, target).tolist() == expected


def test_sener_hand_built_pair():
    left = np.full((28, 28), 100, dtype=np.uint8)
    right = np.full((28, 28), 200, dtype=np.uint8)
    left[0, 0] = 7  # read by output (0, 0)
    right[4, 4] = 50  # canvas (10, 10): overlap where the left digit is brighter
    out = sener_images(left[None], right[None])[0]
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out[0, 0] == 7  # canvas (0, 0): left only, marked
    assert out[3, 3] == 100  # canvas (5, 5): left only
    assert out[8, 8] == 100  # canvas (10, 10): max(100, 50)
    assert out[9, 9] == 200  # canvas (12, 12): max(100, 200)
    assert out[25, 20] == 200  # canvas (32, 26): right only
    assert out[1, 23] == 0  # canvas (1, 30): neither
    assert out[27, 27] == 0  # canvas (35, 35): neither
    np.testing.assert_array_equal(out, sener_reference(left, right))


def test_sener_matches_reference_on_random_pairs():
    rng = np.random.default_rng(0)
    left, right = rng.integers(0, 256, size=(2, 5, 28, 28), dtype=np.uint8)
    out = sener_images(left, right)
    for k in range(5):
        np.testing.assert_array_equal(out[k], sener_reference(left[k], right[k]))


def test_pareto_hand_built_pair():
    top_left = np.full((1, 28, 28), 10, dtype=np.uint8)
    bottom_right = np.full((1, 28, 28), 20, dtype=np.uint8)
    out = pareto_images(top_left, bottom_right, np.array([[1, 2, 3, 4]]))[0]
    assert out.shape == (36, 36)
    assert out[0, 0] == 0 and out[1, 1] == 0
    assert out[1, 2] == 10 and out[28, 29] == 20 and out[4, 29] == 10
    assert out[5, 4] == 20 and out[32, 31] == 20
    assert out[33, 31] == 0 and out[32, 32] == 0
    assert (out == 10).sum() + (out == 20).sum() == 2 * 28 * 28 - 24 * 26


def test_pareto_matches_reference_on_random_pairs():
    rng = np.random.default_rng(1)
    top_left, bottom_right = rng.integers(0, 256, size=(2, 30, 28, 28), dtype=np.uint8)
    shifts = rng.integers(0, 5, size=(30, 4))
    shifts[0], shifts[1] = (0, 0, 0, 0), (4, 4, 4, 4)  # the extreme corners
    out = pareto_images(top_left, bottom_right, shifts)
    for k in range(30):
        expected = pareto_reference(top_left[k], bottom_right[k], shifts[k])
        np.testing.assert_array_equal(out[k], expected)


def test_pareto_refuses_out_of_range_shifts():
    items = np.zeros((1, 28, 28), dtype=np.uint8)
    with pytest.raises(DataError, match="shifts"):
        pareto_images(items, items, np.array([[0, 0, 5, 0]]))


def test_distinct_partners():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 50)
    partners = draw_partners(rng, labels, labels, distinct=True)
    assert partners.shape == (100,) and partners.min() >= 0 and partners.max() < 100
    assert (labels[partners] != labels).all()
    with pytest.raises(DataError, match="same class"):
        draw_partners(rng, labels, np.zeros(5, dtype=int), distinct=True)
