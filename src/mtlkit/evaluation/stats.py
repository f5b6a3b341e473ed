"""Error bars over seeds: the mean and its confidence interval by Student's t.

With n runs (seeds) x₁…xₙ, mean x̄ and sample standard deviation s, the two-sided confidence
interval of the mean at level c is ``x̄ ± t_{(1+c)/2, n−1} · s / √n``. The t quantile is computed
here, exactly, from the closed form of Student's t distribution for an integer number of degrees
of freedom (Abramowitz & Stegun 26.7.3–4), inverted by bisection: no scipy at run time.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def t_central_probability(t: float, df: int) -> float:
    """``P(|T| ≤ t)`` for Student's t with ``df`` degrees of freedom (``t ≥ 0``, ``df ≥ 1``).

    With θ = atan(t/√df): for odd df, ``(2/π)(θ + sinθ·(cosθ + ⅔cos³θ + … ))`` with the series
    ending at cos^(df−2)θ (no series for df = 1); for even df, ``sinθ·(1 + ½cos²θ + ⅜cos⁴θ + … )``
    ending at cos^(df−2)θ.
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be an integer ≥ 1, got {df!r}.")
    if not t >= 0:
        raise ValueError(f"t must be ≥ 0, got {t!r}.")
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        term, series = math.cos(theta), 0.0
        for k in range(1, (df - 1) // 2 + 1):
            series += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        return (2.0 / math.pi) * (theta + sin * series)
    term, series = 1.0, 0.0
    for k in range(1, df // 2 + 1):
        series += term
        term *= cos2 * (2 * k - 1) / (2 * k)
    return sin * series


def t_quantile(confidence: float, df: int) -> float:
    """The t with ``P(|T| ≤ t) = confidence``: the two-sided critical value (e.g. 12.706 for
    confidence 0.95 and df 1, 2.776 for df 4).

    Raises:
        ValueError: ``confidence`` not in (0, 1), or ``df`` not an integer ≥ 1.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    low, high = 0.0, 1.0
    while t_central_probability(high, df) < confidence:
        low, high = high, 2.0 * high
    while high - low > 1e-13 * high:
        middle = 0.5 * (low + high)
        if t_central_probability(middle, df) < confidence:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


@dataclass(frozen=True)
class MeanCI:
    """The mean of ``n`` values and the half-width of its confidence interval.

    ``half_width`` is NaN when ``n`` < 2 (one run gives no error bar).
    """

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        """The interval's lower end."""
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        """The interval's upper end."""
        return self.mean + self.half_width

    def format(self, decimals: int) -> str:
        """``"0.9512 ± 0.0031"`` (just the mean when there is no error bar)."""
        if math.isnan(self.half_width):
            return f"{self.mean:.{decimals}f}"
        return f"{self.mean:.{decimals}f} ± {self.half_width:.{decimals}f}"


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """The mean of ``values`` and its Student-t confidence interval at ``confidence``.

    Raises:
        ValueError: ``values`` is empty or holds a non-finite value.
    """
    data = [float(value) for value in values]
    if not data:
        raise ValueError("values is empty: pass at least one value (one per seed).")
    if not all(math.isfinite(value) for value in data):
        raise ValueError(f"values must be finite, got {data}.")
    mean = statistics.fmean(data)
    if len(data) < 2:
        return MeanCI(mean, math.nan, len(data))
    spread = statistics.stdev(data) / math.sqrt(len(data))
    return MeanCI(mean, t_quantile(confidence, len(data) - 1) * spread, len(data))


def mean_ranks(
    means: Mapping[str, Mapping[str, float]], higher_is_better: Mapping[str, bool]
) -> dict[str, float]:
    """Per method, its rank on each task's mean (1 = best; ties share their mean rank),
    averaged over the tasks of ``higher_is_better``.

    Args:
        means: per method, per task, the mean test metric.
        higher_is_better: per task, the direction of its metric.

    Raises:
        ValueError: no method, no task, or a method without a task's mean.
    """
    if not means or not higher_is_better:
        raise ValueError("mean_ranks: give one or more methods and one or more tasks.")
    missing = [(m, t) for m, row in means.items() for t in higher_is_better if t not in row]
    if missing:
        raise ValueError(f"mean_ranks: method {missing[0][0]!r} has no mean for {missing[0][1]!r}.")
    ranks: dict[str, list[float]] = {method: [] for method in means}
    for task, higher in higher_is_better.items():
        values = {method: row[task] for method, row in means.items()}
        for method, value in values.items():
            better = sum(1 for v in values.values() if (v > value if higher else v < value))
            equal = sum(1 for v in values.values() if v == value)
            ranks[method].append(better + (equal + 1) / 2)
    return {method: statistics.fmean(values) for method, values in ranks.items()}
