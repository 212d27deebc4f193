"""One rollout: its targets, steps, flip, retention, rollback, preflight and alert routes."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from enum import StrEnum

from pydantic import Field

from controller.core.config.model.analysis import Analysis, AnalysisOverride
from controller.core.config.model.base import (
    Duration,
    Flag,
    Int32,
    IntOrPercent,
    LabelKey,
    LabelValue,
    MetricName,
    Model,
    Name,
    Namespace,
    Selector,
    ServiceName,
    UrlPath,
)


class Shifting(StrEnum):
    """How traffic moves during the steps (DESIGN.md §4, README "Shifting modes")."""

    # Canary up, then stable down to N - canary: N pods (+ maxSurge while moving), but every
    # step terminates stable pods that are still in the Service.
    STANDARD = "standard"
    # Stable stays at N through the steps, canary grows within maxSurge (weights k/(N+k));
    # stable is scaled down only after the flip took it out of the Service: no serving pod is
    # terminated, at the cost of up to 2N pods at the flip.
    SURGE = "surge"


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


def canonical_hash(data: object) -> str:
    """16 hex digits of SHA-256 over `data` (JSON-able) as sorted-key JSON: equal data, equal hash.

    The one hash of config data: `Rollout.spec_hash` and the rollout target's hash
    (`controller.core.rollout.target_hash`, persisted in every state, so its bytes must not change).
    """
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


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
        """A short stable hash of everything that defines this rollout (recorded at its start)."""
        return canonical_hash(self.model_dump(mode="json", by_alias=True))

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
