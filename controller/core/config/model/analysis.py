"""The analysis part of a rollout: metric sources, thresholds, capacity gate, traffic share."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from controller.core.config.model.base import (
    PROM_LABEL,
    Duration,
    Int32,
    MetricName,
    Model,
    Number,
)


class Policy(StrEnum):
    """What to do when a step has been held past ``maxHold``."""

    PAUSE = "pause"
    ROLLBACK = "rollback"
    HOLD = "hold"


class Side(StrEnum):
    """Which pods a query is about."""

    CANARY = "canary"
    STABLE = "stable"
    SERVICE = "service"  # both versions: everything behind the shared selector


# ---------------------------------------------------------------------------------------------
# Analysis

Matchers = dict[
    Annotated[str, Field(pattern=PROM_LABEL)],
    Annotated[
        str,
        Field(
            description="label value; prefix with =~, != or !~ for regex or negative matches",
        ),
    ],
]


class CounterRatio(Model):
    """rate(metric{numerator}) / rate(metric{denominator}) over the window, per side."""

    metric: MetricName
    numerator: Matchers
    denominator: Matchers = Field(default_factory=dict)
    denominator_metric: MetricName | None = Field(
        default=None,
        description=(
            "count the denominator on this counter instead of `metric` (e.g. upstream 429s "
            "per client request): the value is then events per denominator event, not a "
            "fraction, and may exceed 1"
        ),
    )

    @property
    def per_event(self) -> bool:
        """Whether numerator and denominator count different counters (not a proportion)."""
        return self.denominator_metric is not None and self.denominator_metric != self.metric


class Gauge(Model):
    """An aggregate over a gauge's series, per side."""

    metric: MetricName
    aggregate: Literal["sum", "min", "max", "avg"] = "sum"
    matchers: Matchers = Field(default_factory=dict)


class HistogramQuantile(Model):
    """histogram_quantile(q, rate(metric_bucket)) over the window, per side."""

    metric: MetricName = Field(description="histogram base name, without _bucket")
    quantile: float = Field(gt=0, lt=1, strict=True)
    matchers: Matchers = Field(default_factory=dict)


class Rate(Model):
    """sum(rate(counter{matchers})) over the window, per side (requests per second)."""

    metric: MetricName
    matchers: Matchers = Field(default_factory=dict)


SOURCE_KINDS = ("query", "counter_ratio", "gauge", "histogram_quantile", "rate")


class Source(Model):
    """Where a value comes from: a raw PromQL template or one structured metric."""

    query: str | None = Field(
        default=None,
        description="raw PromQL template; variables as {{ name }}",
    )
    counter_ratio: CounterRatio | None = None
    gauge: Gauge | None = None
    histogram_quantile: HistogramQuantile | None = None
    rate: Rate | None = None

    def kind(self) -> str | None:
        """The one source kind that is set, or None when none or several are."""
        chosen = [k for k in SOURCE_KINDS if getattr(self, k) is not None]
        return chosen[0] if len(chosen) == 1 else None


class Compare(Model):
    """Canary fails only if it is also worse than stable: canary > stable * factor + slack."""

    factor: float = Field(default=1.0, gt=0, strict=True)
    slack: float = Field(default=0.0, ge=0, strict=True)


class Metric(Source):
    """One analysis metric: a source, thresholds, and how long a breach must last."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$", max_length=63)]
    max: Number | None = None
    min: Number | None = None
    for_: Duration = Field(default=timedelta(0), alias="for")
    compare: Compare | None = None
    min_requests: Int32 | None = Field(default=None, ge=0)
    sample_query: str | None = Field(
        default=None,
        description="raw PromQL template counting requests in the window, for minRequests",
    )


class CapacityGate(Model):
    """Hold while canary capacity < its projected share of demand x headroom."""

    capacity: Source = Field(
        description="canary's capacity in requests/s (e.g. the sum of its rate limits)"
    )
    demand: Source = Field(description="current demand on the whole Service in requests/s")
    headroom: float = Field(default=1.2, gt=0, strict=True)


class TrafficShare(Model):
    """Hold a step whose observed canary request share strays from its desired weight.

    Replica ratios only approximate traffic share: keep-alive clients stay on the pods they
    first reached. The canary's share is rate(metric) on the canary over rate(metric) on the
    whole Service in the analysis window, from the proxy's own request counter.
    """

    metric: MetricName = Field(
        default="zai_proxy_requests_total", description="counter of requests, one per request"
    )
    matchers: Matchers = Field(default_factory=dict)
    tolerance: float = Field(
        default=15.0,
        gt=0,
        le=100,
        strict=True,
        description="percentage points the observed share may differ from the step's weight",
    )

    def source(self) -> Source:
        """The per-side request rate whose canary/service ratio is the share."""
        return Source(rate=Rate(metric=self.metric, matchers=dict(self.matchers)))


DEFAULT_SELECTORS: dict[Side, str] = {
    Side.CANARY: 'namespace="{{ namespace }}",pod=~"{{ canary_pod_regex }}"',
    Side.STABLE: 'namespace="{{ namespace }}",pod=~"{{ stable_pod_regex }}"',
    Side.SERVICE: 'namespace="{{ namespace }}",pod=~"{{ service_pod_regex }}"',
}


class Selectors(Model):
    """PromQL label matchers that pick each side's series (templates)."""

    canary: str = DEFAULT_SELECTORS[Side.CANARY]
    stable: str = DEFAULT_SELECTORS[Side.STABLE]
    service: str = DEFAULT_SELECTORS[Side.SERVICE]

    def for_side(self, side: Side) -> str:
        """The matcher template for one side."""
        return str(getattr(self, side.value))


class Analysis(Model):
    """How a rollout is judged while it runs."""

    provider: Literal["prometheus", "direct"] = "prometheus"
    interval: Duration = timedelta(seconds=30)
    window: Duration = timedelta(minutes=2)
    min_requests: Int32 = Field(default=50, ge=0)
    confidence: float = Field(
        default=0.95,
        gt=0.5,
        lt=1.0,
        strict=True,
        description="how sure a counterRatio's verdict must be: it fails max only when the "
        "lower bound of its Wilson interval at this (one-sided) confidence is above max, passes "
        "only when the upper bound is at most max, else is inconclusive; also the confidence "
        "of comparisons with stable",
    )
    selectors: Selectors = Field(default_factory=Selectors)
    metrics: list[Metric] = Field(default_factory=list)
    capacity_gate: CapacityGate | None = None
    traffic_share: TrafficShare | None = None
    on_inconclusive: Policy = Policy.PAUSE
    on_error: Policy = Policy.PAUSE
    max_hold: Duration = timedelta(minutes=10)


class AnalysisOverride(Model):
    """Per-step changes to the rollout's analysis; unset fields are inherited."""

    interval: Duration | None = None
    window: Duration | None = None
    min_requests: Int32 | None = Field(default=None, ge=0)
    metrics: list[Metric] | None = None
    capacity_gate: CapacityGate | None = None
    traffic_share: TrafficShare | None = None
    on_inconclusive: Policy | None = None
    on_error: Policy | None = None
    max_hold: Duration | None = None
