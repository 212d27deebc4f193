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

# One-sided 95 %: the standard normal's 95th percentile.
Z_95 = 1.6448536269514722


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


def is_proportion(value: float, requests: float | None) -> bool:
    """Whether a ratio and its request count can be treated as a proportion of trials."""
    return requests is not None and requests > 0 and 0.0 <= value <= 1.0


__all__ = ["Z_95", "excess_lower_bound", "is_proportion", "wilson_interval"]
