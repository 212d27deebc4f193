"""Scraped samples over time, and PromQL's functions over them (pure: no I/O, no asyncio).

The direct provider stores every scrape of every pod here (`PodHistory`: a bounded ring buffer
of ``(time, value)`` per series) and evaluates structured metrics with the same arithmetic as
the PromQL that `controller.core.analysis.templates` compiles them to:

* ``rate``/``increase`` are Prometheus' ``extrapolatedRate`` (2.x): per series, the difference
  between the last and the first sample in the window, plus the value before every decrease
  (a counter reset), extrapolated towards the window's edges - by at most 1.1 average scrape
  intervals (else half of one), and never below the counter's zero point - then divided by
  the window for ``rate``. A series with fewer than two samples in the window has no rate.
* ``histogram_quantile`` is Prometheus' classic-bucket interpolation (see `histogram_quantile`).
* gauges take each series' latest sample, if its pod's latest scrape succeeded and still
  exposed the series (Prometheus writes staleness markers otherwise) and it is no older than
  the window; ``sum``/``avg`` propagate NaN, ``min``/``max`` skip it, as PromQL does.
* label matchers are PromQL's ``=``, ``!=``, ``=~``, ``!~``; regexes are fully anchored (Python
  ``re.fullmatch``, which agrees with RE2 on the usual syntax), and an absent label is ``""``.

Remaining differences from Prometheus are the inputs, not the arithmetic: our scrapes happen at
other instants than Prometheus' (a window holds a slightly different set of samples), and the
buffer timestamps a sample with the scrape's start time even when the exposition carries its
own timestamp.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from controller.core.analysis.evaluate import Sample
from controller.core.analysis.quantile import histogram_quantile
from controller.core.config.model import Source
from controller.shell.providers.exposition import ExpositionSample, Labels

Point = tuple[float, float]  # (time in seconds, value)
Op = Literal["=", "!=", "=~", "!~"]

# How many more points than the expected ones a series' ring buffer may hold (extra scrapes,
# e.g. the one a provider runs when a rollout is first asked about).
_SLACK_POINTS = 8


# -- label matchers ---------------------------------------------------------------------------


class MatcherError(ValueError):
    """A matcher's regex does not compile."""


class UnsupportedSource(ValueError):
    """A source the direct provider cannot evaluate (a raw PromQL ``query``)."""


@dataclass(frozen=True)
class LabelMatcher:
    """One PromQL label matcher: ``name op "value"``."""

    name: str
    op: Op
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a series with these labels matches (an absent label is "")."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found


def compile_matchers(matchers: Mapping[str, str]) -> list[LabelMatcher]:
    """Config matchers (a value may start with ``=~``, ``!=``, ``!~``) -> `LabelMatcher`s.

    The prefixes are read exactly as `templates.matcher_text` reads them for PromQL.
    `MatcherError` for a regex that does not compile.
    """
    out: list[LabelMatcher] = []
    for name, raw in sorted(matchers.items()):
        op: Op = "="
        value = raw
        for prefix in ("=~", "!=", "!~"):
            if raw.startswith(prefix):
                op = prefix
                value = raw[len(prefix) :]
                break
        pattern = None
        if op in ("=~", "!~"):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise MatcherError(f"invalid regex for label {name}: {value!r}: {exc}") from None
        out.append(LabelMatcher(name, op, value, pattern))
    return out


def matches_all(matchers: Sequence[LabelMatcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher matches."""
    return all(m.matches(labels) for m in matchers)


# -- the sample buffer --------------------------------------------------------------------------


@dataclass
class Series:
    """One series of one pod: its labels and a ring buffer of points, oldest first."""

    key: Labels
    labels: Mapping[str, str]
    points: deque[Point]

    def in_window(self, start: float, end: float) -> list[Point]:
        """Points with ``start <= t <= end`` (Prometheus 2.x ranges are closed)."""
        return [p for p in self.points if start <= p[0] <= end]

    def latest(self) -> Point | None:
        """The newest point."""
        return self.points[-1] if self.points else None


@dataclass
class PodHistory:
    """Everything scraped from one pod: series by metric name, and how its scrapes went.

    `target_labels` are attached to every series as Prometheus attaches target labels
    (``pod``, ``instance``, ...); a label the exposition already has is renamed to
    ``exported_<name>`` (``honor_labels: false``).
    """

    name: str
    target_labels: Mapping[str, str] = field(default_factory=dict)
    by_metric: dict[str, dict[Labels, Series]] = field(default_factory=dict)
    last_attempt: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    # The series keys of the latest successful scrape (gauges outside it are stale).
    current: set[tuple[str, Labels]] = field(default_factory=set)

    @property
    def failing(self) -> bool:
        """Whether the latest scrape attempt failed."""
        return self.last_error is not None

    def record(
        self, at: float, samples: Iterable[ExpositionSample], max_points: int, keep_after: float
    ) -> None:
        """Store one successful scrape taken at `at` (first of duplicate series wins)."""
        self.last_attempt = self.last_success = at
        self.last_error = None
        current: set[tuple[str, Labels]] = set()
        for sample in samples:
            labels = self._series_labels(sample.labels)
            key = (sample.name, labels)
            if key in current:
                continue  # Prometheus drops a duplicate sample in one scrape
            current.add(key)
            by_labels = self.by_metric.setdefault(sample.name, {})
            series = by_labels.get(labels)
            if series is None:
                series = by_labels[labels] = Series(labels, dict(labels), deque(maxlen=max_points))
            elif series.points.maxlen != max_points:
                series.points = deque(series.points, maxlen=max_points)
            series.points.append((at, sample.value))
        self.current = current
        self.trim(keep_after)

    def record_failure(self, at: float, error: str) -> None:
        """Note a failed scrape: the pod's gauges go stale, its history stays."""
        self.last_attempt = at
        self.last_error = error
        self.current = set()

    def trim(self, keep_after: float) -> None:
        """Drop points older than `keep_after`, and series left empty."""
        for name in list(self.by_metric):
            by_labels = self.by_metric[name]
            for labels in list(by_labels):
                points = by_labels[labels].points
                while points and points[0][0] < keep_after:
                    points.popleft()
                if not points:
                    del by_labels[labels]
            if not by_labels:
                del self.by_metric[name]

    def series(self, metric: str, matchers: Sequence[LabelMatcher]) -> Iterator[Series]:
        """This pod's series of `metric` that match every matcher."""
        for series in self.by_metric.get(metric, {}).values():
            if matches_all(matchers, series.labels):
                yield series

    def is_current(self, metric: str, series: Series) -> bool:
        """Whether `series` was in the latest successful scrape (and that scrape was the last)."""
        return not self.failing and (metric, series.key) in self.current

    def _series_labels(self, exposed: Labels) -> Labels:
        labels = {k: v for k, v in exposed if v != ""}  # an empty value is no label
        for name, value in self.target_labels.items():
            if name in labels:
                labels[f"exported_{name}"] = labels.pop(name)
            if value != "":
                labels[name] = value
        return tuple(sorted(labels.items()))


def ring_size(retention: float, scrape_interval: float) -> int:
    """Points per series that cover `retention` seconds of scrapes, with slack."""
    return math.ceil(retention / scrape_interval) + _SLACK_POINTS


# -- PromQL functions -----------------------------------------------------------------------------


def extrapolated_delta(
    points: Sequence[Point], start: float, end: float, *, is_rate: bool
) -> float | None:
    """Prometheus' ``increase()`` (``is_rate=False``) or ``rate()`` of one counter series.

    `points` are the series' samples in ``[start, end]``, oldest first. None with fewer than
    two (Prometheus drops such a series from the result).
    """
    if len(points) < 2:
        return None
    first_t, first_v = points[0]
    last_t, last_v = points[-1]
    result = last_v - first_v
    previous = 0.0
    for _, value in points:
        if value < previous:  # a reset: the counter restarted from 0 after `previous`
            result += previous
        previous = value
    sampled = last_t - first_t
    if sampled <= 0:
        return None
    to_start = first_t - start
    to_end = end - last_t
    average_gap = sampled / (len(points) - 1)
    if result > 0 and first_v >= 0:
        # Counters are never negative: do not extrapolate past the zero point.
        to_start = min(to_start, sampled * (first_v / result))
    threshold = average_gap * 1.1
    covered = sampled
    covered += to_start if to_start < threshold else average_gap / 2
    covered += to_end if to_end < threshold else average_gap / 2
    factor = covered / sampled
    if is_rate:
        factor /= end - start
    return result * factor


def sum_delta(
    histories: Iterable[PodHistory],
    metric: str,
    matchers: Sequence[LabelMatcher],
    start: float,
    end: float,
    *,
    is_rate: bool,
) -> float | None:
    """``sum(rate(metric{matchers}[w]))`` (or ``increase``); None when no series has a rate."""
    total: float | None = None
    for history in histories:
        for series in history.series(metric, matchers):
            delta = extrapolated_delta(series.in_window(start, end), start, end, is_rate=is_rate)
            if delta is not None:
                total = delta if total is None else total + delta
    return total


def aggregate(values: Sequence[float], how: str) -> float | None:
    """PromQL's ``sum``/``min``/``max``/``avg`` over one group; None for no values."""
    if not values:
        return None
    if how in ("sum", "avg"):
        total = math.nan if any(math.isnan(v) for v in values) else math.fsum(values)
        return total if how == "sum" else total / len(values)
    numbers = [v for v in values if not math.isnan(v)]
    if not numbers:
        return math.nan  # min/max replace NaN by any number, so NaN only when all are NaN
    if how == "min":
        return min(numbers)
    if how == "max":
        return max(numbers)
    raise ValueError(f"unknown aggregate {how!r}")


def _le(series: Series) -> float | None:
    raw = series.labels.get("le")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


# -- structured metrics -------------------------------------------------------------------------


@dataclass(frozen=True)
class SideData:
    """One side's pods for one evaluation.

    `current` are the pods the side has now; `departed` left it within the window (their
    counters still count in rates, as their series still match in Prometheus; their gauges
    do not, Prometheus marked them stale).
    """

    current: Sequence[PodHistory]
    departed: Sequence[PodHistory] = ()

    @property
    def all(self) -> list[PodHistory]:
        """Current and departed pods."""
        return [*self.current, *self.departed]


def evaluate_source(source: Source, side: SideData, now: float, window: float) -> Sample:
    """A structured metric's value (and request count) on one side at `now`.

    `MatcherError` for a bad regex, `UnsupportedSource` for a raw ``query``; the provider
    turns both into an error sample.
    """
    start, end = now - window, now
    pods = side.all
    if source.counter_ratio is not None:
        c = source.counter_ratio
        num_m, den_m = compile_matchers(c.numerator), compile_matchers(c.denominator)
        den_metric = c.denominator_metric or c.metric
        den = sum_delta(pods, den_metric, den_m, start, end, is_rate=True)
        requests = sum_delta(pods, den_metric, den_m, start, end, is_rate=False) or 0.0
        if den is None or den == 0 or math.isnan(den):
            return Sample(None, requests=requests)
        num = sum_delta(pods, c.metric, num_m, start, end, is_rate=True) or 0.0
        return Sample(_number(num / den), requests=requests)
    if source.rate is not None:
        r = source.rate
        matchers = compile_matchers(r.matchers)
        value = sum_delta(pods, r.metric, matchers, start, end, is_rate=True)
        requests = sum_delta(pods, r.metric, matchers, start, end, is_rate=False) or 0.0
        return Sample(_number(value), requests=requests)
    if source.histogram_quantile is not None:
        h = source.histogram_quantile
        matchers = compile_matchers(h.matchers)
        buckets: dict[float, float] = {}
        for history in pods:
            for series in history.series(f"{h.metric}_bucket", matchers):
                le = _le(series)
                rate = extrapolated_delta(series.in_window(start, end), start, end, is_rate=True)
                if le is None or rate is None:
                    continue  # Prometheus ignores a bucket without a numeric le
                buckets[le] = buckets.get(le, 0.0) + rate
        count = f"{h.metric}_count"
        requests = sum_delta(pods, count, matchers, start, end, is_rate=False) or 0.0
        if not buckets:
            return Sample(None, requests=requests)
        return Sample(_number(histogram_quantile(h.quantile, buckets)), requests=requests)
    if source.gauge is not None:
        g = source.gauge
        matchers = compile_matchers(g.matchers)
        values = [
            point[1]
            for history in side.current
            for series in history.series(g.metric, matchers)
            if history.is_current(g.metric, series)
            and (point := series.latest()) is not None
            and point[0] >= start
        ]
        return Sample(_number(aggregate(values, g.aggregate)))
    raise UnsupportedSource(
        "the direct provider evaluates structured metrics only: a raw `query` needs "
        "Prometheus (use counterRatio, gauge, histogramQuantile or rate, or provider: prometheus)"
    )


def _number(value: float | None) -> float | None:
    """NaN is no data, as in the Prometheus provider."""
    return None if value is None or math.isnan(value) else value


__all__ = [
    "LabelMatcher",
    "MatcherError",
    "PodHistory",
    "Series",
    "SideData",
    "UnsupportedSource",
    "aggregate",
    "compile_matchers",
    "evaluate_source",
    "extrapolated_delta",
    "histogram_quantile",
    "matches_all",
    "ring_size",
    "sum_delta",
]
