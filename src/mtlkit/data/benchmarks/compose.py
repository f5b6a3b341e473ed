"""Composing two-item images for the multi-task benchmarks, vectorised over the whole split.

* Sener & Koltun (2018), "Multi-Task Learning as Multi-Objective Optimization": the left item at
  the top-left of a 36x36 canvas, the right item 6 px lower and further right, pixel-wise max
  where they overlap, then a nearest-neighbour resize back to 28x28.
* Lin et al. (2019), "Pareto Multi-Task Learning": on a 36x36 canvas, the top-left item shifted
  by up to 4 px right and down from the corner, the bottom-right item by up to 4 px left and up
  from its corner, pixel-wise max; the canvas stays 36x36.
"""

from __future__ import annotations

import numpy as np

from mtlkit.data.errors import DataError

ITEM_SIZE = 28
"""The side of one base image."""
CANVAS_SIZE = 36
"""The side of the canvas both protocols compose on."""
SENER_RIGHT_CORNER = 6
"""Row and column of the right item's top-left corner on the Sener canvas."""
PARETO_MAX_SHIFT = 4
"""The largest shift of an item from its corner in the ParetoMTL protocol."""


def nearest_indices(source: int, target: int) -> np.ndarray:
    """For each of ``target`` output pixels, the source pixel a nearest-neighbour resize reads.

    Pixel centres are mapped onto each other, ``src = floor((dst + 0.5) * source / target)``,
    as PIL's ``NEAREST`` does; computed in integers, so there is no rounding error.
    """
    return ((2 * np.arange(target) + 1) * source) // (2 * target)


def sener_images(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Overlay pairs of 28x28 uint8 images as in Sener & Koltun (2018).

    Args:
        left: (N, 28, 28) items placed at rows/columns 0..27 of a 36x36 zero canvas.
        right: (N, 28, 28) items placed at rows/columns 6..33; overlaps take the max.

    Returns:
        (N, 28, 28) uint8: the canvases resized to 28x28 by nearest neighbour.
    """
    _check_items(left, right)
    canvas = np.zeros((len(left), CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
    canvas[:, :ITEM_SIZE, :ITEM_SIZE] = left
    window = canvas[:, SENER_RIGHT_CORNER:, SENER_RIGHT_CORNER:][:, :ITEM_SIZE, :ITEM_SIZE]
    np.maximum(window, right, out=window)
    rows = nearest_indices(CANVAS_SIZE, ITEM_SIZE)
    return canvas[:, rows[:, None], rows[None, :]]


def pareto_images(top_left: np.ndarray, bottom_right: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Overlay pairs of 28x28 uint8 images as in Lin et al. (2019).

    Args:
        top_left: (N, 28, 28) items whose corner goes to ``(a, b)``.
        bottom_right: (N, 28, 28) items whose corner goes to ``(8 - c, 8 - d)``.
        shifts: (N, 4) integers ``a, b, c, d`` in 0..4.

    Returns:
        (N, 36, 36) uint8 canvases; overlaps take the max.
    """
    _check_items(top_left, bottom_right)
    if shifts.shape != (len(top_left), 4) or shifts.min() < 0 or shifts.max() > PARETO_MAX_SHIFT:
        raise DataError(
            f"pareto composition: shifts must be (N, 4) integers in 0..{PARETO_MAX_SHIFT}, got "
            f"shape {shifts.shape}. Draw them with rng.integers(0, {PARETO_MAX_SHIFT + 1})."
        )
    canvas = np.zeros((len(top_left), CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
    far = CANVAS_SIZE - ITEM_SIZE
    _paste_max(canvas, top_left, shifts[:, 0], shifts[:, 1])
    _paste_max(canvas, bottom_right, far - shifts[:, 2], far - shifts[:, 3])
    return canvas


def draw_partners(
    rng: np.random.Generator, labels: np.ndarray, pool_labels: np.ndarray, *, distinct: bool
) -> np.ndarray:
    """For each sample, the index of a partner drawn uniformly from a pool.

    Args:
        rng: the generator to draw from.
        labels: (N,) labels of the samples that get a partner.
        pool_labels: (M,) labels of the pool the partners come from.
        distinct: redraw partners until their label differs from the sample's.

    Returns:
        (N,) int64 indices into the pool.
    """
    if len(pool_labels) == 0:
        raise DataError("draw_partners: the partner pool is empty. Load a non-empty split.")
    partners = rng.integers(0, len(pool_labels), size=len(labels))
    if not distinct:
        return partners
    if len(np.unique(pool_labels)) < 2:
        raise DataError(
            "draw_partners: every item of the pool has the same class, so no partner of a "
            "different class exists. Use a split with at least two classes."
        )
    clash = np.flatnonzero(pool_labels[partners] == labels)
    while clash.size:
        partners[clash] = rng.integers(0, len(pool_labels), size=clash.size)
        clash = clash[pool_labels[partners[clash]] == labels[clash]]
    return partners


def _paste_max(canvas: np.ndarray, items: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """Max ``items[k]`` into ``canvas[k]`` at corner ``(rows[k], cols[k])``, corner by corner."""
    for row in np.unique(rows):
        for col in np.unique(cols):
            chosen = np.flatnonzero((rows == row) & (cols == col))
            if chosen.size:
                region = (chosen, slice(row, row + ITEM_SIZE), slice(col, col + ITEM_SIZE))
                canvas[region] = np.maximum(canvas[region], items[chosen])


def _check_items(first: np.ndarray, second: np.ndarray) -> None:
    expected = (len(first), ITEM_SIZE, ITEM_SIZE)
    if first.shape != expected or second.shape != expected:
        raise DataError(
            f"composition: both item arrays must be (N, {ITEM_SIZE}, {ITEM_SIZE}) with the same N, "
            f"got {first.shape} and {second.shape}. Pair the items before composing them."
        )
    if first.dtype != np.uint8 or second.dtype != np.uint8:
        raise DataError(
            f"composition: items must be uint8, got {first.dtype} and {second.dtype}. "
            "Compose the raw images before converting them to floats."
        )
