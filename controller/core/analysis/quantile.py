"""Prometheus' ``histogram_quantile`` over classic buckets, in Python (pure).

The direct provider computes it from its own scrapes, and shared queries fold per-pod buckets
with it, so both reproduce what PromQL's ``histogram_quantile`` gives.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """Prometheus' ``histogram_quantile`` over classic buckets ``{upper bound: count}``.

    Linear interpolation inside the bucket holding the rank ``q x total``; the lowest bucket
    starts at 0 (unless its bound is <= 0, which is returned as is); a rank in the ``+Inf``
    bucket returns the upper bound of the last finite bucket. NaN without a ``+Inf`` bucket,
    with fewer than two buckets, or with no observations. Counts that decrease with the bound
    (scrapes of different buckets at different times) are raised to the running maximum, as
    Prometheus' ``ensureMonotonic`` does.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bounds = sorted(buckets)
    if len(bounds) < 2 or bounds[-1] != math.inf:
        return math.nan
    counts: list[float] = []
    running = -math.inf
    for bound in bounds:
        running = max(running, buckets[bound])
        counts.append(running)
    observations = counts[-1]
    if observations == 0 or math.isnan(observations):
        return math.nan
    rank = q * observations
    b = bisect_left(counts, rank, hi=len(counts) - 1)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    bucket_start = 0.0
    bucket_end = bounds[b]
    count = counts[b]
    if b > 0:
        bucket_start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:
        return math.nan  # only for q == 0 over an empty lowest bucket: Go's 0/0
    return bucket_start + (bucket_end - bucket_start) * (rank / count)
