"""The analysis evaluator (pure): measurements -> verdicts, with `for:` persistence.

Providers fetch, this module judges. A provider never raises into here: a failed query is a
`Sample` with `error` set, no data is a `Sample` with `value=None`. Verdicts form a closed,
ordered set; the overall verdict is the worst one (fail > error > inconclusive > pass), and
"no data" is never pass.

Comparison against stable (``compare``): with an absolute threshold as well, canary fails only
when it breaches the threshold *and* is worse than ``stable * factor + slack`` — a breach that
stable shares (an upstream incident) holds the rollout instead of rolling it back. With
``compare`` alone, being worse than stable is the breach. For a ``counterRatio`` (a proportion
of a known number of requests) "worse" means worse beyond the noise of the window: the lower
95 % confidence bound of canary's excess over stable's band must clear it
(`controller.core.analysis.significance`); a canary above the band only within the noise is
inconclusive.

Absolute thresholds on a ``counterRatio`` are judged the same way: 3 failures in 40 requests
and 300 in 4,000 both read 7.5 %, but only the second is evidence. A proportion fails ``max``
only when the lower bound of its Wilson score interval is above it and passes only when the
upper bound is at most it (``min`` mirrored); in between it is inconclusive, so a thin window
holds rather than passing or failing on noise. Each bound is one-sided at
``analysis.confidence`` (default 95 %), which also sets the comparison's bound; the bounds are
in the reason text. ``minRequests`` still applies first, as a floor.

The breach clock (``for:``). Each reading of a metric is one of four kinds (`Breach`), and the
kind alone decides what happens to the time the metric's breach started:

* ``none`` — within thresholds: the clock stops (reset).
* ``canary`` — canary breaches and stable does not explain it: the clock starts, or keeps
  running; the metric fails once it has run for ``for:``.
* ``shared`` — canary breaches, but the comparison puts it within stable's band ("the fleet is
  breaching too"): the clock stops (reset). A fleet-wide incident is no evidence against the
  canary, so breaches before it never add up with breaches after it; the next canary-only
  breach starts a new ``for:``.
* ``unknown`` — the reading cannot tell: no data, too few requests, a failed query (either
  side), or canary above stable's band by less than the noise: the clock is kept as it is
  (neither started nor stopped), so an occasional timeout or thin window cannot stop a
  sustained breach from ever failing.

So a metric fails at a reading only if it is a canary-only breach and every reading since the
clock started - the first canary-only breach after the last ``none`` or ``shared`` one - was a
canary-only breach or an ``unknown``, for at least ``for:``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from controller.core.analysis.significance import (
    DEFAULT_CONFIDENCE,
    absolute_breach,
    breaches,
    confidence_text,
    worse_than_stable,
)
from controller.core.config.model import CapacityGate, Metric


class Verdict(StrEnum):
    """One evaluation's outcome, ordered from best to worst."""

    PASS = "pass"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        """Severity: higher is worse."""
        return _RANK[self]


_RANK = {Verdict.PASS: 0, Verdict.INCONCLUSIVE: 1, Verdict.ERROR: 2, Verdict.FAIL: 3}


def worst(verdicts: Sequence[Verdict]) -> Verdict:
    """The most severe verdict (PASS for none)."""
    return max(verdicts, key=lambda v: v.rank, default=Verdict.PASS)


class Breach(StrEnum):
    """What one reading says about a breach; it decides the `for:` clock (module doc)."""

    NONE = "none"  # within thresholds: the clock stops
    CANARY = "canary"  # a breach stable does not explain: the clock runs
    SHARED = "shared"  # a breach within stable's band (fleet-wide): the clock stops
    UNKNOWN = "unknown"  # the reading cannot tell: the clock is kept as it is


@dataclass(frozen=True)
class Judgement:
    """One reading's instantaneous verdict (before `for:`), why, and its kind of breach."""

    verdict: Verdict
    reason: str
    breach: Breach


@dataclass(frozen=True)
class Sample:
    """One side's value for one metric: a number, no data (None), or the query's error."""

    value: float | None
    requests: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Measurement:
    """What a provider fetched for one metric at one time."""

    metric: str
    canary: Sample
    stable: Sample | None = None


@dataclass(frozen=True)
class MetricResult:
    """A metric's verdict and the numbers behind it."""

    name: str
    verdict: Verdict
    value: float | None
    stable: float | None
    threshold: str
    reason: str
    breach_since: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The result as logs, the status API and backtests show it (one shape everywhere)."""
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "value": self.value,
            "stable": self.stable,
            "threshold": self.threshold,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AnalysisSummary:
    """All metrics judged at one time; carried into the next evaluation for `for:`."""

    at: datetime
    verdict: Verdict
    metrics: tuple[MetricResult, ...] = ()
    capacity: CapacityResult | None = None

    def breach_since(self) -> Mapping[str, datetime]:
        """When each currently breaching metric started breaching."""
        return {m.name: m.breach_since for m in self.metrics if m.breach_since is not None}

    def failing(self) -> list[MetricResult]:
        """The metrics whose verdict is fail."""
        return [m for m in self.metrics if m.verdict is Verdict.FAIL]

    def explain(self) -> str:
        """One line naming the worst metrics with value and threshold."""
        bad = [
            m for m in self.metrics if m.verdict is self.verdict and m.verdict is not Verdict.PASS
        ]
        if not bad:
            return f"all {len(self.metrics)} metric(s) pass" if self.metrics else "no metrics"
        return "; ".join(f"{m.name}: {m.reason}" for m in bad)


@dataclass(frozen=True)
class CapacityResult:
    """The capacity gate: can canary absorb its next share of demand?"""

    verdict: Verdict
    capacity: float | None
    demand: float | None
    needed: float | None
    reason: str


def _fmt(x: float | None) -> str:
    return "no data" if x is None else f"{x:.4g}"


def threshold_text(metric: Metric) -> str:
    """The metric's thresholds for people: ``<= 0.05``, ``<= stable*1.5+0.01``."""
    parts = []
    if metric.max is not None:
        parts.append(f"<= {metric.max:g}")
    if metric.min is not None:
        parts.append(f">= {metric.min:g}")
    if metric.compare is not None:
        op = ">=" if metric.min is not None and metric.max is None else "<="
        parts.append(f"{op} stable*{metric.compare.factor:g}+{metric.compare.slack:g}")
    return ", ".join(parts)


def judge(
    metric: Metric, m: Measurement, min_requests: int, confidence: float = DEFAULT_CONFIDENCE
) -> Judgement:
    """The instantaneous verdict for one measurement (before `for:` persistence)."""
    c = m.canary
    if c.error is not None:
        return Judgement(Verdict.ERROR, f"query failed: {c.error}", Breach.UNKNOWN)
    if c.value is None:
        return Judgement(Verdict.INCONCLUSIVE, "no data for canary", Breach.UNKNOWN)
    needed = metric.min_requests if metric.min_requests is not None else min_requests
    if c.requests is not None and c.requests < needed:
        return Judgement(
            Verdict.INCONCLUSIVE,
            f"{c.requests:.0f} requests < minRequests {needed}",
            Breach.UNKNOWN,
        )
    value = c.value
    absolute = metric.max is not None or metric.min is not None
    breach_abs, bounds = absolute_breach(metric, value, c.requests, confidence)
    shown = f"{_fmt(value)}{bounds} vs {threshold_text(metric)}"
    if metric.compare is None:
        return _on_threshold(breach_abs, shown, confidence)
    s = m.stable
    if s is not None and s.error is not None:
        # Without the baseline a fleet-wide incident cannot be told from a bad canary.
        return Judgement(
            Verdict.ERROR, f"{_fmt(value)}; stable query failed: {s.error}", Breach.UNKNOWN
        )
    if s is None or s.value is None or (s.requests is not None and s.requests < needed):
        if absolute:
            return _on_threshold(breach_abs, shown + " (stable: no data)", confidence)
        return Judgement(
            Verdict.INCONCLUSIVE,
            f"{_fmt(value)}; stable has no data to compare with",
            Breach.UNKNOWN,
        )
    shown = f"{shown} (stable {_fmt(s.value)})"
    if absolute and breach_abs is not True:
        # Within the threshold beyond doubt passes; a canary that may or may not breach it
        # holds whatever stable does, as stable cannot make an unproven breach a proven one.
        return _on_threshold(breach_abs, shown, confidence)
    worse, noise = worse_than_stable(metric, (value, c.requests), (s.value, s.requests), confidence)
    if not worse:
        if not absolute:
            return Judgement(Verdict.PASS, shown, Breach.NONE)
        shared = breaches(metric, s.value)
        why = "stable breaches too (fleet-wide?)" if shared else "within stable's band"
        return Judgement(
            Verdict.INCONCLUSIVE, f"{shown}: {why}, holding; breach clock reset", Breach.SHARED
        )
    if noise is not None:
        return Judgement(Verdict.INCONCLUSIVE, f"{shown}: {noise}, holding", Breach.UNKNOWN)
    return Judgement(Verdict.FAIL, shown, Breach.CANARY)


def _on_threshold(breach: bool | None, shown: str, confidence: float) -> Judgement:
    if breach is None:
        return Judgement(
            Verdict.INCONCLUSIVE,
            f"{shown}: too few requests to tell at {confidence_text(confidence)} confidence, "
            "holding",
            Breach.UNKNOWN,
        )
    if breach:
        return Judgement(Verdict.FAIL, shown, Breach.CANARY)
    return Judgement(Verdict.PASS, shown, Breach.NONE)


def evaluate(
    metrics: Sequence[Metric],
    measurements: Mapping[str, Measurement],
    min_requests: int,
    now: datetime,
    previous: AnalysisSummary | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> AnalysisSummary:
    """Judge every metric; a breach only fails once it has lasted the metric's `for:`.

    `confidence` (one-sided) is how sure a proportion's verdict must be (module doc).
    """
    since = previous.breach_since() if previous is not None else {}
    results = []
    for metric in metrics:
        m = measurements.get(metric.name)
        if m is None:
            # An error like a failed query: the breach clock is kept.
            results.append(
                MetricResult(
                    metric.name,
                    Verdict.ERROR,
                    None,
                    None,
                    threshold_text(metric),
                    "not measured",
                    since.get(metric.name),
                )
            )
            continue
        j = judge(metric, m, min_requests, confidence)
        verdict, reason = j.verdict, j.reason
        breach_at: datetime | None = None
        if j.breach is Breach.UNKNOWN:
            breach_at = since.get(metric.name)
        elif j.breach is Breach.CANARY:
            breach_at = since.get(metric.name, now)
            lasted = now - breach_at
            if lasted < metric.for_:
                verdict = Verdict.INCONCLUSIVE
                reason += f"; breaching for {_secs(lasted)} of {_secs(metric.for_)}"
        results.append(
            MetricResult(
                metric.name,
                verdict,
                m.canary.value,
                m.stable.value if m.stable is not None else None,
                threshold_text(metric),
                reason,
                breach_at,
            )
        )
    return AnalysisSummary(now, worst([r.verdict for r in results]), tuple(results))


def without_stable_baseline(summary: AnalysisSummary, metrics: Sequence[Metric]) -> AnalysisSummary:
    """The summary once stable serves no traffic (after the flip).

    A metric judged only against stable (``compare`` without ``max``/``min``) has no baseline
    then; it stays in the record but no longer counts towards the overall verdict.
    """
    relative = {
        m.name for m in metrics if m.compare is not None and m.max is None and m.min is None
    }
    counted = [r.verdict for r in summary.metrics if r.name not in relative]
    return AnalysisSummary(summary.at, worst(counted), summary.metrics, summary.capacity)


def _secs(delta: timedelta) -> str:
    return f"{delta.total_seconds():g}s"


def check_capacity(
    gate: CapacityGate, capacity: Sample, demand: Sample, next_weight: float
) -> CapacityResult:
    """PASS when canary's capacity >= demand x next weight x headroom."""
    for label, sample in (("capacity", capacity), ("demand", demand)):
        if sample.error is not None:
            return CapacityResult(
                Verdict.ERROR,
                capacity.value,
                demand.value,
                None,
                f"{label} query failed: {sample.error}",
            )
        if sample.value is None:
            return CapacityResult(
                Verdict.INCONCLUSIVE, capacity.value, demand.value, None, f"no data for {label}"
            )
    assert capacity.value is not None and demand.value is not None
    needed = demand.value * next_weight / 100 * gate.headroom
    if capacity.value >= needed:
        return CapacityResult(
            Verdict.PASS,
            capacity.value,
            demand.value,
            needed,
            f"capacity {capacity.value:.4g} rps >= {needed:.4g} needed",
        )
    return CapacityResult(
        Verdict.INCONCLUSIVE,
        capacity.value,
        demand.value,
        needed,
        f"canary capacity {capacity.value:.4g} rps < {needed:.4g} rps needed for "
        f"{next_weight:g}% of {demand.value:.4g} rps x {gate.headroom:g} headroom",
    )


__all__ = [
    "AnalysisSummary",
    "Breach",
    "CapacityResult",
    "Judgement",
    "Measurement",
    "MetricResult",
    "Sample",
    "Verdict",
    "check_capacity",
    "evaluate",
    "judge",
    "without_stable_baseline",
    "worst",
]
