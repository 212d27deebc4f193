"""Wilson intervals and the MOVER bound of a difference of proportions: known values, properties
and the error rates of the canary-vs-stable comparison, computed exactly over binomial outcomes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.analysis.significance import (
    excess_lower_bound,
    is_proportion,
    wilson_interval,
)

Z_TWO_SIDED_95 = 1.959963984540054


def test_newcombe_1998_worked_examples() -> None:
    """Newcombe, Statistics in Medicine 17:873-890, Table II, method 10 (two-sided 95 %)."""
    z = Z_TWO_SIDED_95
    # 56/70 - 48/80: interval 0.0524 to 0.3339.
    assert excess_lower_bound(56 / 70, 70, 48 / 80, 80, z=z) == pytest.approx(0.0524, abs=1e-4)
    assert -excess_lower_bound(48 / 80, 80, 56 / 70, 70, z=z) == pytest.approx(0.3339, abs=1e-4)
    # 9/10 - 3/10: 0.1705 to 0.8090.
    assert excess_lower_bound(0.9, 10, 0.3, 10, z=z) == pytest.approx(0.1705, abs=1e-4)
    assert -excess_lower_bound(0.3, 10, 0.9, 10, z=z) == pytest.approx(0.8090, abs=1e-4)


@given(p=st.floats(0.0, 1.0), n=st.floats(1.0, 1e6))
def test_wilson_bounds_are_where_the_score_test_turns(p: float, n: float) -> None:
    """By definition each bound p0 solves (p - p0)^2 = z^2 p0 (1 - p0) / n."""
    z = Z_TWO_SIDED_95
    for p0 in wilson_interval(p, n, z):
        if p0 in (0.0, 1.0):
            continue  # clipped to [0, 1]
        assert (p - p0) ** 2 == pytest.approx(z * z * p0 * (1 - p0) / n, rel=1e-6, abs=1e-12)


def test_wilson_at_the_edges() -> None:
    low, high = wilson_interval(0.0, 100)
    assert low == 0.0 and 0.02 < high < 0.03  # 0 of 100 is not "certainly 0 %"
    low, high = wilson_interval(1.0, 100)
    assert 0.97 < low < 0.98 and high == 1.0
    assert wilson_interval(0.5, 0) == (0.0, 1.0)  # no trials: anything


proportions = st.floats(min_value=0.0, max_value=1.0)
counts = st.floats(min_value=1.0, max_value=1e7)


@given(p=proportions, n=counts)
def test_wilson_interval_holds_the_estimate_and_narrows_with_more_trials(
    p: float, n: float
) -> None:
    low, high = wilson_interval(p, n)
    assert 0.0 <= low <= p + 1e-12 and p - 1e-12 <= high <= 1.0
    low4, high4 = wilson_interval(p, 4 * n)
    assert high4 - low4 <= high - low + 1e-12


@given(p1=proportions, n1=counts, p2=proportions, n2=counts, b=st.floats(0.1, 10.0))
def test_the_bound_is_below_the_point_difference(
    p1: float, n1: float, p2: float, n2: float, b: float
) -> None:
    assert excess_lower_bound(p1, n1, p2, n2, b=b) <= p1 - b * p2 + 1e-12


@given(p1=proportions, p2=proportions, b=st.floats(0.1, 10.0))
def test_the_bound_converges_to_the_point_difference(p1: float, p2: float, b: float) -> None:
    """With a busy service the comparison is the plain one."""
    bound = excess_lower_bound(p1, 1e9, p2, 1e9, b=b)
    assert bound == pytest.approx(p1 - b * p2, abs=2e-4 * (1 + b))


def test_what_counts_as_a_proportion() -> None:
    assert is_proportion(0.14, 100.0) and is_proportion(0.0, 1.0) and is_proportion(1.0, 5.0)
    assert not is_proportion(0.14, None)  # no request count
    assert not is_proportion(0.14, 0.0)
    assert not is_proportion(1.5, 100.0)  # a ratio above 1 counts something else


# -- error rates, exactly -----------------------------------------------------------------------


def _pmf(n: int, p: float) -> list[float]:
    return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


def called_worse(
    canary: float, n_c: int, stable: float, n_s: int, factor: float, slack: float
) -> tuple[float, float]:
    """P(canary judged worse than stable x factor + slack) over all binomial outcomes of one
    window: (on point values, by the confidence bound)."""
    point = bound = 0.0
    for k_c, w_c in enumerate(_pmf(n_c, canary)):
        if w_c < 1e-12:
            continue
        for k_s, w_s in enumerate(_pmf(n_s, stable)):
            p_c, p_s = k_c / n_c, k_s / n_s
            if w_s < 1e-12 or p_c <= p_s * factor + slack:
                continue
            point += w_c * w_s
            if excess_lower_bound(p_c, n_c, p_s, n_s, b=factor) > slack:
                bound += w_c * w_s
    return point, bound


def test_a_one_pod_canary_at_the_fleets_ratio_is_almost_never_called_worse() -> None:
    """Issue 18 run 1: both versions at 14 % 502s, ~100 canary and ~300 stable requests per
    window, the pack's band (x1.5 + 0.01). On point values 3.8 % of windows call the canary
    worse - several times an hour at one evaluation per 30 s; by the bound, 0.04 %."""
    point, bound = called_worse(0.14, 100, 0.14, 300, 1.5, 0.01)
    assert point == pytest.approx(0.0377, abs=5e-4)
    assert bound < 5e-4


def test_the_comparison_has_its_nominal_size() -> None:
    """With no band (factor 1, slack 0) and equal rates, "worse beyond doubt" is a one-sided
    5 % test: the false-alarm rate stays near 5 % (point values: ~45 %)."""
    for rate in (0.02, 0.14, 0.5):
        point, bound = called_worse(rate, 100, rate, 300, 1.0, 0.0)
        assert point > 0.4
        assert bound < 0.06, rate


def test_a_bad_canary_is_still_caught_in_one_window() -> None:
    for canary, stable, power in ((0.20, 0.01, 0.999), (0.50, 0.0, 0.999), (0.10, 0.01, 0.85)):
        _, bound = called_worse(canary, 100, stable, 300, 1.5, 0.01)
        assert bound > power, (canary, stable)
