"""The analysis evaluator (pure): measurements -> verdicts, with `for:` persistence.

Providers fetch, this module judges. A provider never raises into here: a failed query is a
`Sample` with `error` set, no data is a `Sample` with `value=None`. Verdicts form a closed,
ordered set; the overall verdict is the worst one (fail > error > inconclusive > pass), and
"no data" is never pass.

Comparison against stable (``compare``): with an absolute threshold as well, canary fails only
when it breaches the threshold *and* is worse than ``stable * factor + slack`` — a breach that
stable shares (an upstream incident) holds the rollout instead of rolling it back. With
``compare`` alone, being worse than stable is the breach.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from controller.config.model import CapacityGate, Metric


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


def judge(metric: Metric, m: Measurement, min_requests: int) -> tuple[Verdict, str]:
    """The instantaneous verdict for one measurement (before `for:` persistence)."""
    c = m.canary
    if c.error is not None:
        return Verdict.ERROR, f"query failed: {c.error}"
    if c.value is None:
        return Verdict.INCONCLUSIVE, "no data for canary"
    needed = metric.min_requests if metric.min_requests is not None else min_requests
    if c.requests is not None and c.requests < needed:
        return Verdict.INCONCLUSIVE, f"{c.requests:.0f} requests < minRequests {needed}"
    value = c.value
    absolute = metric.max is not None or metric.min is not None
    breach_abs = (metric.max is not None and value > metric.max) or (
        metric.min is not None and value < metric.min
    )
    shown = f"{_fmt(value)} vs {threshold_text(metric)}"
    if metric.compare is None:
        return (Verdict.FAIL if breach_abs else Verdict.PASS), shown
    s = m.stable
    if s is not None and s.error is not None:
        # Without the baseline a fleet-wide incident cannot be told from a bad canary.
        return Verdict.ERROR, f"{_fmt(value)}; stable query failed: {s.error}"
    stable_known = (
        s is not None
        and s.error is None
        and s.value is not None
        and (s.requests is None or s.requests >= needed)
    )
    if not stable_known:
        if absolute:
            return (Verdict.FAIL if breach_abs else Verdict.PASS), shown + " (stable: no data)"
        return Verdict.INCONCLUSIVE, f"{_fmt(value)}; stable has no data to compare with"
    assert s is not None and s.value is not None
    higher_is_better = metric.min is not None and metric.max is None
    if higher_is_better:
        limit = s.value / metric.compare.factor - metric.compare.slack
        worse = value < limit
    else:
        limit = s.value * metric.compare.factor + metric.compare.slack
        worse = value > limit
    shown = f"{_fmt(value)} vs {threshold_text(metric)} (stable {_fmt(s.value)})"
    if not absolute:
        return (Verdict.FAIL if worse else Verdict.PASS), shown
    if breach_abs and not worse:
        return Verdict.INCONCLUSIVE, shown + ": stable breaches too (fleet-wide?), holding"
    return (Verdict.FAIL if breach_abs else Verdict.PASS), shown


def evaluate(
    metrics: Sequence[Metric],
    measurements: Mapping[str, Measurement],
    min_requests: int,
    now: datetime,
    previous: AnalysisSummary | None = None,
) -> AnalysisSummary:
    """Judge every metric; a breach only fails once it has lasted the metric's `for:`."""
    since = previous.breach_since() if previous is not None else {}
    results = []
    for metric in metrics:
        m = measurements.get(metric.name)
        if m is None:
            results.append(
                MetricResult(
                    metric.name, Verdict.ERROR, None, None, threshold_text(metric), "not measured"
                )
            )
            continue
        verdict, reason = judge(metric, m, min_requests)
        breach_at: datetime | None = None
        if verdict in (Verdict.ERROR, Verdict.INCONCLUSIVE):
            # A failed query or a thin window says nothing about the breach: keep its clock,
            # or an occasional timeout would stop a sustained breach from ever failing.
            breach_at = since.get(metric.name)
        elif verdict is Verdict.FAIL:
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
    "CapacityResult",
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
