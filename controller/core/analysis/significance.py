"""Is canary's ratio worse than stable's beyond the noise of the window? (pure)

A counter ratio (502s / requests) over a window is a proportion of ``n`` requests, and a
proportion of a small ``n`` is noisy: with ~100 requests at a true 14 %, one window reads
anything from ~8 % to ~21 % (±1.96 standard errors of sqrt(0.14 x 0.86 / 100) = 3.5 points).
Comparing two such readings by their point values alone calls a canary worse than stable on
noise - on a real cluster a healthy one-pod canary was rolled back on a window of ~100 requests
reading 10.7 % against stable's 5.85 % while both versions were at ~14 %.

So the comparison asks whether the *excess* of canary over stable's band is positive beyond
doubt. For a metric where lower is better the band is ``stable x factor + slack``; the excess
is ``theta = p_canary - factor x p_stable``, and canary is worse when ``theta > slack``. Its
one-sided 95 % lower confidence bound comes from the MOVER method (Zou & Donner 2008; for
``factor = 1`` it is Newcombe's 1998 hybrid score interval for a difference of proportions,
method 10), built from each side's Wilson score interval::

    L = (a p1 - b p2) - sqrt((a (p1 - lower1))^2 + (b (upper2 - p2))^2)

with ``a = 1, b = factor`` (where higher is better, ``theta = p_stable / factor - p_canary``:
``a = 1 / factor`` on stable, ``b = 1`` on canary).

Canary is worse beyond doubt when ``L > slack``. Wilson intervals, unlike the textbook
``p +- z sqrt(p(1-p)/n)``, stay inside [0, 1] and keep a sensible width at 0 % and 100 %, where
error ratios of healthy services live. With large ``n`` both intervals shrink and the test
converges to the plain comparison of the point values.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from controller.core.config.model import Metric

# One-sided 95 %: the standard normal's 95th percentile.
Z_95 = 1.6448536269514722
DEFAULT_CONFIDENCE = 0.95


def z_for(confidence: float) -> float:
    """The one-sided normal quantile for `confidence` (0.95 -> 1.645)."""
    return NormalDist().inv_cdf(confidence)


def confidence_text(confidence: float) -> str:
    """``95%``, ``99.9%``: how reason texts name the confidence."""
    return f"{confidence * 100:.4g}%"


def wilson_interval(p: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval (lower, upper) of a proportion `p` of `n` trials."""
    if n <= 0:
        return 0.0, 1.0
    z2n = z * z / n
    denominator = 1 + z2n
    centre = (p + z2n / 2) / denominator
    half = z / denominator * math.sqrt(max(p * (1 - p), 0.0) / n + z2n / (4 * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def excess_lower_bound(
    p1: float,
    n1: float,
    p2: float,
    n2: float,
    *,
    a: float = 1.0,
    b: float = 1.0,
    z: float = Z_95,
) -> float:
    """One-sided lower confidence bound of ``a x p1 - b x p2`` (a, b > 0).

    `p1` and `p2` are proportions of `n1` and `n2` trials (MOVER with Wilson intervals).
    """
    lower1, _ = wilson_interval(p1, n1, z)
    _, upper2 = wilson_interval(p2, n2, z)
    return (a * p1 - b * p2) - math.hypot(a * (p1 - lower1), b * (upper2 - p2))


def threshold_breach(
    lower: float,
    upper: float,
    p: float,
    *,
    maximum: float | None,
    minimum: float | None,
) -> bool | None:
    """Does a proportion breach `maximum`/`minimum` beyond doubt (True), keep within them
    beyond doubt (False), or can its confidence bounds (`lower`, `upper`) not tell (None)?

    Breaching beyond doubt: the lower bound is above ``maximum`` (or the upper bound below
    ``minimum``); within: the upper bound is at most ``maximum`` and the lower bound at least
    ``minimum``. A threshold on the edge of [0, 1] (``max: 0`` - not one error) is a statement
    about counts no interval can clear, so the point value `p` decides it, as without bounds.
    """
    breach = False
    unsure = False
    if maximum is not None:
        if maximum <= 0.0 or maximum >= 1.0:
            breach |= p > maximum
        elif lower > maximum:
            breach = True
        elif upper > maximum:
            unsure = True
    if minimum is not None:
        if minimum <= 0.0 or minimum >= 1.0:
            breach |= p < minimum
        elif upper < minimum:
            breach = True
        elif lower < minimum:
            unsure = True
    if breach:
        return True
    return None if unsure else False


def is_proportion(value: float, requests: float | None) -> bool:
    """Whether a ratio and its request count can be treated as a proportion of trials."""
    return requests is not None and requests > 0 and 0.0 <= value <= 1.0


def absolute_breach(
    metric: Metric, value: float, requests: float | None, confidence: float
) -> tuple[bool | None, str]:
    """Does canary's `value` breach `max`/`min` (None: cannot tell), and its bounds as text?

    A proportion (a `counterRatio` of requests) breaches or keeps within a threshold only
    beyond the noise of its window: its Wilson bounds at `confidence` must clear it
    (`threshold_breach`). Anything else compares its value.
    """
    if (
        metric.counter_ratio is None
        or metric.counter_ratio.per_event
        or (metric.max is None and metric.min is None)
        or not (requests is not None and 0.0 <= value <= 1.0)
    ):
        return breaches(metric, value), ""
    if requests <= 0:
        return None, " (no requests in the window)"
    lower, upper = wilson_interval(value, requests, z_for(confidence))
    breach = threshold_breach(lower, upper, value, maximum=metric.max, minimum=metric.min)
    pct = confidence_text(confidence)
    return breach, f" ({pct} bounds {lower:.3g}..{upper:.3g} of {requests:.0f} requests)"


def breaches(metric: Metric, value: float) -> bool:
    """Whether `value` is above `max` or below `min` (point values, no noise)."""
    return (metric.max is not None and value > metric.max) or (
        metric.min is not None and value < metric.min
    )


def worse_than_stable(
    metric: Metric,
    canary: tuple[float, float | None],
    stable: tuple[float, float | None],
    confidence: float,
) -> tuple[bool, str | None]:
    """Is canary outside stable's band, and if so, is that only noise (why, else None)?

    A `counterRatio` with request counts on both sides is a pair of proportions: canary is
    worse only if the lower confidence bound of its excess over the band clears the slack
    (module doc); `canary` and `stable` are (value, request count). Any other metric (and a
    counterRatio over two counters, which counts events per request) compares values.
    """
    assert metric.compare is not None
    (cv, cn), (sv, sn) = canary, stable
    factor, slack = metric.compare.factor, metric.compare.slack
    higher_is_better = metric.min is not None and metric.max is None
    worse = cv < sv / factor - slack if higher_is_better else cv > sv * factor + slack
    # Events per request (a `denominatorMetric`) are no proportion of trials: values compare.
    if not worse or metric.counter_ratio is None or metric.counter_ratio.per_event:
        return worse, None
    if not (is_proportion(cv, cn) and is_proportion(sv, sn)):
        return worse, None
    assert cn is not None and sn is not None
    z = z_for(confidence)
    if higher_is_better:
        bound = excess_lower_bound(sv, sn, cv, cn, a=1 / factor, z=z)
    else:
        bound = excess_lower_bound(cv, cn, sv, sn, b=factor, z=z)
    if bound > slack:
        return True, None
    pct = confidence_text(confidence)
    return True, (
        f"worse than stable only within the noise of {cn:.0f} and {sn:.0f} requests "
        f"({pct} lower bound of the excess {bound:.3g} <= slack {slack:g})"
    )


__all__ = [
    "DEFAULT_CONFIDENCE",
    "Z_95",
    "absolute_breach",
    "breaches",
    "confidence_text",
    "excess_lower_bound",
    "is_proportion",
    "threshold_breach",
    "wilson_interval",
    "worse_than_stable",
    "z_for",
]
