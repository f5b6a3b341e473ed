"""Pareto fronts, their hypervolume, and preference vectors on the simplex.

Every function here minimises: a point is a row of objective values, lower is better in every
column (turn a higher-is-better metric m into −m, or 1 − m for a rate, before calling).

* :func:`pareto_front` — the indices of the non-dominated rows. Row a dominates row b when a is
  ≤ b in every column and < in at least one; equal rows do not dominate each other, so
  duplicates of a front point are all kept.
* :func:`hypervolume` — the Lebesgue measure of the region dominated by the points and bounded
  by a reference point r: ``vol(∪ᵢ [pᵢ, r])``. Points that are not strictly below r in every
  column add nothing. Exact in any dimension: a sweep in 2-D, and in higher dimensions the
  hypervolume by slicing objectives (HSO; While, Hingston, Barone & Huband 2006) — sort on the
  last objective and sum the (d−1)-dimensional hypervolume of each slab — which is exact and fast
  for the tens of points a sweep produces (its cost grows exponentially with the dimension).
* :func:`das_dennis` — the Das & Dennis (1998) simplex-lattice design: every vector of K
  non-negative multiples of 1/H summing to 1, C(H+K−1, K−1) of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

Point = Sequence[float]


def _rows(points: Sequence[Point], name: str = "points") -> list[tuple[float, ...]]:
    rows = [tuple(float(v) for v in point) for point in points]
    if rows and (len({len(row) for row in rows}) != 1 or len(rows[0]) == 0):
        raise ValueError(f"{name} must be rows of one same, non-zero length.")
    if any(not math.isfinite(v) for row in rows for v in row):
        raise ValueError(f"{name} must hold finite values only.")
    return rows


def dominates(first: Point, second: Point) -> bool:
    """Whether ``first`` dominates ``second``: ≤ in every column and < in one (minimising)."""
    return all(a <= b for a, b in zip(first, second)) and any(a < b for a, b in zip(first, second))


def pareto_front(points: Sequence[Point]) -> list[int]:
    """The indices (ascending) of the rows that no other row dominates, lower being better in
    every column.

    Raises:
        ValueError: rows of different lengths, or a non-finite value.
    """
    rows = _rows(points)
    return [
        i
        for i, row in enumerate(rows)
        if not any(dominates(other, row) for j, other in enumerate(rows) if j != i)
    ]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (minimising; exact).

    Raises:
        ValueError: the points and the reference differ in length, or a value is not finite.
    """
    ref = _rows([reference], "reference")[0]
    rows = _rows(points)
    if rows and len(rows[0]) != len(ref):
        raise ValueError(
            f"the points have {len(rows[0])} objectives but the reference has {len(ref)}."
        )
    inside = [row for row in rows if all(v < r for v, r in zip(row, ref))]
    front = [inside[i] for i in pareto_front(inside)]
    return _hso(sorted(set(front)), ref)


def _hso(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    """Hypervolume of mutually non-dominated (or any) points strictly inside ``ref``."""
    if not points:
        return 0.0
    dims = len(ref)
    if dims == 1:
        return ref[0] - min(point[0] for point in points)
    if dims == 2:
        volume, ceiling = 0.0, ref[1]
        for x, y in sorted(points):
            if y < ceiling:
                volume += (ref[0] - x) * (ceiling - y)
                ceiling = y
        return volume
    ordered = sorted(points, key=lambda point: point[-1])
    volume = 0.0
    for index, point in enumerate(ordered):
        top = ordered[index + 1][-1] if index + 1 < len(ordered) else ref[-1]
        if top > point[-1]:
            slab = [p[:-1] for p in ordered[: index + 1]]
            kept = [slab[i] for i in pareto_front(slab)]
            volume += _hso(kept, ref[:-1]) * (top - point[-1])
    return volume


def das_dennis(num_objectives: int, divisions: int) -> list[tuple[float, ...]]:
    """The simplex-lattice design: every K-vector of multiples of 1/H (H = ``divisions``) that
    sums to 1, in lexicographic order of the first coordinates, descending.

    For K = 2 and H = 10 that is λ = (1, 0), (0.9, 0.1), …, (0, 1).

    Raises:
        ValueError: K < 1 or H < 1.
    """
    if num_objectives < 1 or divisions < 1:
        raise ValueError(
            f"num_objectives and divisions must be ≥ 1, got {num_objectives} and {divisions}."
        )
    vectors = []
    # A composition of H into K parts ↔ K−1 bar positions among H + K − 1 slots.
    for bars in combinations(range(divisions + num_objectives - 1), num_objectives - 1):
        edges = (-1, *bars, divisions + num_objectives - 1)
        vectors.append(
            tuple((edges[i + 1] - edges[i] - 1) / divisions for i in range(num_objectives))
        )
    return sorted(vectors, reverse=True)


def lattice_divisions(num_objectives: int, points: int) -> int:
    """The largest H whose Das–Dennis design has at most ``points`` vectors (at least 1)."""
    divisions = 1
    while math.comb(divisions + num_objectives, num_objectives - 1) <= points:
        divisions += 1
    return divisions
