"""The config model: global settings, defaults that rollouts inherit, and the rollouts.

Field names are snake_case in Python and camelCase in YAML (``versionLabel``). Durations are
strings in YAML (``30s``) and ``timedelta`` here. Every model rejects unknown keys.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from controller.core.durations import (
    DURATION_HELP,
    DURATION_PATTERN,
    format_duration,
    parse_duration,
)

MAX_DURATION = timedelta(days=3650)  # so holds and bakes can be added up without overflow


def _duration_in(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        parsed = parse_duration(value)
        if parsed > MAX_DURATION:
            raise ValueError(f"duration {value!r} is too long (at most 3650d)")
        return parsed
    raise ValueError(f"expected {DURATION_HELP}, got {type(value).__name__} {value!r}")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_in),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "description": DURATION_HELP}),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]

# YAML's types as the schema and Kubernetes take them: `true` is no number, "20" no integer.
INT32_MAX = 2**31 - 1
Number = Annotated[float, Field(strict=True)]
Int32 = Annotated[int, Field(strict=True, le=INT32_MAX)]
Flag = Annotated[bool, Field(strict=True)]


_PERCENT = r"(100|[1-9]?[0-9])%"


def _int_or_percent_in(value: object) -> int | str:
    if isinstance(value, bool):
        raise ValueError(
            f"expected a non-negative integer or a percentage like '25%', got {value!r}"
        )
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a non-negative integer, got {value}")
        if value > INT32_MAX:
            raise ValueError(f"expected an integer at most {INT32_MAX}, got {value}")
        return value
    if isinstance(value, str) and re.fullmatch(_PERCENT, value):
        return value
    raise ValueError(f"expected a non-negative integer or a percentage like '25%', got {value!r}")


IntOrPercent = Annotated[
    int | str,
    BeforeValidator(_int_or_percent_in),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": INT32_MAX},
                {"type": "string", "pattern": f"^{_PERCENT}$"},
            ]
        }
    ),
]

# Kubernetes names, per kind: namespaces are DNS-1123 labels, Services DNS-1035 labels (a letter
# first), Deployments DNS-1123 subdomains (dot-separated labels); and label values.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)

Name = Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
ServiceName = Annotated[str, Field(pattern=DNS_1035_LABEL, max_length=63)]
Namespace = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
# Prometheus's classic names (what a query can use without quoting).
METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
PROM_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
MetricName = Annotated[str, Field(pattern=METRIC_NAME)]
UrlPath = Annotated[str, Field(pattern=r"^/")]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE, max_length=63)]
LabelKey = Annotated[str, Field(pattern=LABEL_KEY)]
Selector = dict[LabelKey, LabelValue]


class Model(BaseModel):
    """Base: camelCase keys in YAML, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        validate_default=True,
        allow_inf_nan=False,
    )


class Policy(StrEnum):
    """What to do when a step has been held past ``maxHold``."""

    PAUSE = "pause"
    ROLLBACK = "rollback"
    HOLD = "hold"


class Shifting(StrEnum):
    """How traffic moves during the steps (DESIGN.md §4, README "Shifting modes")."""

    # Canary up, then stable down to N - canary: N pods (+ maxSurge while moving), but every
    # step terminates stable pods that are still in the Service.
    STANDARD = "standard"
    # Stable stays at N through the steps, canary grows within maxSurge (weights k/(N+k));
    # stable is scaled down only after the flip took it out of the Service: no serving pod is
    # terminated, at the cost of up to 2N pods at the flip.
    SURGE = "surge"


class Side(StrEnum):
    """Which pods a query is about."""

    CANARY = "canary"
    STABLE = "stable"
    SERVICE = "service"  # both versions: everything behind the shared selector


# ---------------------------------------------------------------------------------------------
# Global settings


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"expected an http(s) URL with a valid port, got {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    return value


class PrometheusSettings(Model):
    """How to reach Prometheus."""

    url: Annotated[str, AfterValidator(_http_url)] = "http://localhost:9090"
    timeout: PositiveDuration = timedelta(seconds=10)
    bearer_token_file: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    ca_file: str | None = None


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


# ---------------------------------------------------------------------------------------------
# Alerts: Alertmanager notifications that act on a rollout (README "Alertmanager")


class AlertAction(StrEnum):
    """What a matching firing alert does to a rollout in flight."""

    ROLLBACK = "rollback"
    PAUSE = "pause"


class AlertRoute(Model):
    """Alerts whose labels satisfy every matcher act on this rollout with `action`."""

    matchers: list[str] = Field(
        min_length=1,
        description="Alertmanager matchers, all must hold: 'alertname=~\"ZaiProxy.*\"', "
        "'namespace=\"{{ namespace }}\"'; operators =, !=, =~, !~ (regexes fully anchored); "
        "values may use the rollout's template variables, e.g. {{ canary_version }}",
    )
    action: AlertAction = Field(
        default=AlertAction.ROLLBACK,
        description="rollback (abort the rollout) or pause it for a person",
    )


# ---------------------------------------------------------------------------------------------
# Rollout


class Step(Model):
    """One stage: shift to a weight, then hold (and analyse) before the next."""

    weight: float = Field(
        strict=True, description="canary's share of traffic in percent, in (0, 100]"
    )
    hold: Duration = timedelta(minutes=1)
    manual_gate: bool = Field(
        default=False, strict=True, description="pause after the hold until promoted"
    )
    analysis: AnalysisOverride | None = None


class Flip(Model):
    """The final selector flip and bake."""

    canary_replicas: Int32 | None = Field(
        default=None, ge=1, description="canary size at the flip; default: the rollout's replicas"
    )
    bake: Duration = timedelta(minutes=5)


class Retention(Model):
    """What happens to stable after the bake."""

    scale_down_delay: Duration = Field(
        default=timedelta(hours=24),
        description="how long stable is kept (scaled to 0) so a rollback stays instant",
    )
    delete_stable: Flag = False


class Rollback(Model):
    """How a rollback ends and whether the rollout may try again."""

    canary_replicas: Int32 = Field(default=0, ge=0)
    cooldown: Duration = timedelta(minutes=5)
    max_attempts: Int32 = Field(
        default=3, ge=1, description="attempts per canary spec, retries incl."
    )
    auto_retry: bool = Field(
        default=False, strict=True, description="retry by itself after the cooldown"
    )


class PreflightMetrics(Model):
    """Metric families the canary's /metrics must have, by when they appear."""

    at_start: list[MetricName] = Field(
        default_factory=list,
        description="exposed from process start (zai-proxy: build_info, max_workers, the rate "
        "gauge); absent past startGrace fails the preflight",
    )
    lazy: list[MetricName] = Field(
        default_factory=list,
        description="created by the first request or event (zai-proxy: requests_total, "
        "request_duration_seconds); absent is not a problem",
    )


class Preflight(Model):
    """The automated version of the manual 'verify v2 is healthy' step."""

    probe: bool = Field(
        default=True, strict=True, description="probe each canary pod's health/metrics over HTTP"
    )
    port: int | None = Field(default=None, ge=1, le=65535, strict=True)
    health_path: UrlPath = "/health"
    metrics_path: UrlPath = "/metrics"
    metrics: PreflightMetrics = Field(default_factory=PreflightMetrics)
    expect_metrics: list[MetricName] = Field(
        default_factory=list,
        description="old name of metrics.atStart (families required from process start)",
    )
    start_grace: Duration = Field(
        default=timedelta(seconds=30),
        description="a pod younger than this may still lack an atStart family: wait, not fail",
    )
    timeout: Duration = Field(
        default=timedelta(minutes=5),
        description="how long preflight waits on what time can fix (pods not Ready, probes "
        "unanswered) before it fails with the last reason",
    )
    require_pre_stop: bool = Field(
        default=False,
        strict=True,
        description="refuse to start (instead of warning) when pods ptc terminates while they "
        "still serve have no preStop delay",
    )
    allow_autoscalers: bool = Field(
        default=False,
        strict=True,
        description="start (with a warning) although a HorizontalPodAutoscaler scales the stable "
        "or canary Deployment: it will undo ptc's replica counts",
    )

    def at_start(self) -> list[str]:
        """Families required from process start (`metrics.atStart` and the old `expectMetrics`)."""
        return list(dict.fromkeys([*self.metrics.at_start, *self.expect_metrics]))


class DeploymentRef(Model):
    """A Deployment and the version label value its pods carry."""

    deployment: Name
    version: LabelValue | None = None


class CanaryRef(DeploymentRef):
    """The canary always carries a version label value: the flip pins to it."""

    version: LabelValue


class Rollout(Model):
    """One service switching from stable to canary."""

    name: Name
    namespace: Namespace = "default"
    service: ServiceName
    version_label: LabelKey = "version"
    shared_selector: Selector | None = Field(
        default=None, description="default: the Service's selector minus the version label"
    )
    stable: DeploymentRef
    canary: CanaryRef
    replicas: Int32 | None = Field(
        default=None, ge=1, description="default: stable's replicas when the rollout starts"
    )
    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = 0
    shifting: Shifting = Field(
        default=Shifting.STANDARD,
        description="standard: scale stable down as canary grows (N pods, but serving stable "
        "pods are terminated at each step); surge: stable stays at N until the flip, canary "
        "grows within maxSurge (no serving pod terminated; needs maxSurge >= the canary's "
        "full size, weights up to 50%)",
    )
    weight_tolerance: float = Field(
        default=10.0,
        ge=0,
        le=100,
        strict=True,
        description="percentage points a step may miss its weight by",
    )
    steps: list[Step] = Field(min_length=1)
    flip: Flip = Field(default_factory=Flip)
    retention: Retention = Field(default_factory=Retention)
    analysis: Analysis = Field(default_factory=Analysis)
    rollback: Rollback = Field(default_factory=Rollback)
    preflight: Preflight = Field(default_factory=Preflight)
    alerts: list[AlertRoute] = Field(
        default_factory=list,
        description="Alertmanager alerts that roll back or pause this rollout while it runs",
    )

    def spec_hash(self) -> str:
        """A short stable hash of everything that defines this rollout."""
        canonical = json.dumps(
            self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def step_analysis(self, index: int) -> Analysis:
        """The analysis in force at step `index` (the step's override over the rollout's)."""
        override = self.steps[index].analysis if 0 <= index < len(self.steps) else None
        if override is None:
            return self.analysis
        changes = {k: v for k, v in override if v is not None}
        return self.analysis.model_copy(update=changes)


# The keys `defaults:` may carry: every rollout field but identity and targets.
DEFAULTABLE = (
    "namespace",
    "version_label",
    "max_surge",
    "max_unavailable",
    "shifting",
    "weight_tolerance",
    "steps",
    "flip",
    "retention",
    "analysis",
    "rollback",
    "preflight",
    "alerts",
)


class RolloutDefaults(Model):
    """Settings every rollout inherits unless it sets its own (maps merge, lists replace)."""

    namespace: Namespace | None = None
    version_label: LabelKey | None = None
    max_surge: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None
    shifting: Shifting | None = None
    weight_tolerance: float | None = Field(default=None, ge=0, le=100, strict=True)
    steps: list[Step] | None = None
    flip: Flip | None = None
    retention: Retention | None = None
    analysis: Analysis | None = None
    rollback: Rollback | None = None
    preflight: Preflight | None = None
    alerts: list[AlertRoute] | None = None


class Config(Model):
    """A whole config file."""

    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    defaults: RolloutDefaults = Field(default_factory=RolloutDefaults)
    rollouts: list[Rollout] = Field(
        description="required: an empty file is a mistake; `rollouts: []` says none on purpose"
    )

    def rollout(self, name: str) -> Rollout:
        """The rollout called `name`; KeyError naming the ones there are."""
        for r in self.rollouts:
            if r.name == name:
                return r
        known = ", ".join(r.name for r in self.rollouts) or "none"
        raise KeyError(f"no rollout named {name!r} (rollouts in this file: {known})")
