"""Error bars over seeds: Student's t quantiles and the confidence interval of a mean."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from mtlkit.evaluation.stats import mean_ci, mean_ranks, t_central_probability, t_quantile

# Two-sided 95 % critical values as printed in every t table (3 decimals).
TABLE_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 29: 2.045}


@pytest.mark.parametrize(("df", "value"), TABLE_95.items())
def test_t_quantile_matches_the_printed_table(df: int, value: float) -> None:
    assert t_quantile(0.95, df) == pytest.approx(value, abs=5e-4)  # the table's rounding


@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.95, 0.99, 0.999])
def test_t_quantile_matches_scipy_for_every_small_df(confidence: float) -> None:
    for df in range(1, 61):
        expected = scipy_stats.t.ppf((1 + confidence) / 2, df)
        assert t_quantile(confidence, df) == pytest.approx(expected, rel=1e-9), df


def test_central_probability_is_the_closed_form_cdf() -> None:
    for df in (1, 2, 3, 7, 30):
        for t in (0.0, 0.3, 1.0, 2.5, 10.0):
            expected = scipy_stats.t.cdf(t, df) - scipy_stats.t.cdf(-t, df)
            assert t_central_probability(t, df) == pytest.approx(expected, abs=1e-13)
    assert t_central_probability(math.inf, 3) == 1.0


def test_mean_ci_of_a_known_sample() -> None:
    # 1..5: mean 3, s = √2.5, s/√5 = √0.5; t(0.95, 4) = 2.7764451051977987
    result = mean_ci([1, 2, 3, 4, 5])
    assert result.mean == 3.0 and result.n == 5
    assert result.half_width == pytest.approx(2.7764451051977987 * math.sqrt(0.5), rel=1e-12)
    assert (result.low, result.high) == pytest.approx(
        (3 - result.half_width, 3 + result.half_width)
    )
    assert result.format(2) == "3.00 ± 1.96"


def test_one_value_has_no_error_bar_and_bad_input_is_refused() -> None:
    single = mean_ci([0.9])
    assert single.mean == 0.9 and math.isnan(single.half_width)
    assert single.format(3) == "0.900"
    assert mean_ci([2.0, 2.0, 2.0]).half_width == 0.0
    with pytest.raises(ValueError, match="values is empty"):
        mean_ci([])
    with pytest.raises(ValueError, match="finite"):
        mean_ci([1.0, math.nan])
    with pytest.raises(ValueError, match="confidence"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df"):
        t_quantile(0.95, 0)


def test_mean_ranks_follow_each_tasks_direction_and_ties_share_their_mean_rank():
    means = {
        "a": {"acc": 0.9, "rmse": 2.0},
        "b": {"acc": 0.8, "rmse": 1.0},
        "c": {"acc": 0.8, "rmse": 3.0},
    }
    ranks = mean_ranks(means, {"acc": True, "rmse": False})
    assert ranks == {"a": (1 + 2) / 2, "b": (2.5 + 1) / 2, "c": (2.5 + 3) / 2}
    with pytest.raises(ValueError, match="method 'a' has no mean for 'loss'"):
        mean_ranks(means, {"loss": False})
