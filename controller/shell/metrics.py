"""ptc's own Prometheus metrics (served on /metrics), one registry per controller."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.core.state import Phase

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every metric the controller exports; labels carry namespace and rollout."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.phase = Gauge(
            "ptc_rollout_phase",
            "1 for the phase each rollout is in, 0 for the others",
            ["namespace", "rollout", "phase"],
            registry=r,
        )
        self.step = Gauge(
            "ptc_rollout_step",
            "Index of the current step (0-based)",
            ["namespace", "rollout"],
            registry=r,
        )
        self.weight_desired = Gauge(
            "ptc_rollout_weight_desired_percent",
            "Canary weight the current step asks for",
            ["namespace", "rollout"],
            registry=r,
        )
        self.weight_actual = Gauge(
            "ptc_rollout_weight_actual_percent",
            "Canary share of Ready endpoints behind the Service",
            ["namespace", "rollout"],
            registry=r,
        )
        self.weight_observed = Gauge(
            "ptc_rollout_weight_observed_percent",
            "Canary share of requests measured by analysis.trafficShare over its window",
            ["namespace", "rollout"],
            registry=r,
        )
        self.analysis_value = Gauge(
            "ptc_analysis_value",
            "Latest value of each analysis metric",
            ["namespace", "rollout", "metric", "side"],
            registry=r,
        )
        self.verdicts = Counter(
            "ptc_analysis_verdicts",
            "Analysis verdicts by metric",
            ["namespace", "rollout", "metric", "verdict"],
            registry=r,
        )
        self.rollbacks = Counter(
            "ptc_rollbacks", "Rollbacks started", ["namespace", "rollout"], registry=r
        )
        self.actions = Histogram(
            "ptc_action_duration_seconds",
            "Time to execute one action against the API server",
            ["action"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.api_errors = Counter(
            "ptc_api_errors", "Kubernetes API errors by type", ["error"], registry=r
        )
        self.leader = Gauge("ptc_leader", "1 while this instance is the leader", registry=r)
        self.alert_requests = Counter(
            "ptc_alert_webhook_requests",
            "Alertmanager webhook requests by HTTP status answered",
            ["code"],
            registry=r,
        )
        self.alert_outcomes = Counter(
            "ptc_alert_outcomes",
            "What matching alerts did per rollout: rollback, pause, duplicate, recorded, resolved",
            ["namespace", "rollout", "outcome"],
            registry=r,
        )
        # Fleet-wide, no rollout label (see controller.shell.lag): 500 rollouts x 12 buckets is too
        # many.
        lag_buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
        self.reconcile_lag = Histogram(
            "ptc_reconcile_lag_seconds",
            "From the moment a reconcile became due (event, report, timer) to its start",
            registry=r,
            buckets=lag_buckets,
        )
        self.evaluation_lag = Histogram(
            "ptc_evaluation_lag_seconds",
            "Age of a verdict when it reached the reconciler, from its scheduled evaluation time",
            registry=r,
            buckets=lag_buckets,
        )
        self.config_generation = Gauge(
            "ptc_config_generation", "How many configs have been applied", registry=r
        )

    def set_phase(self, namespace: str, rollout: str, phase: Phase) -> None:
        """Mark `phase` as the rollout's current one."""
        for p in Phase:
            self.phase.labels(namespace, rollout, p.value).set(1 if p is phase else 0)

    def set_weight_observed(self, namespace: str, rollout: str, percent: float | None) -> None:
        """The observed request share, or no series while it is not measured."""
        gauge = self.weight_observed
        if percent is not None:
            gauge.labels(namespace, rollout).set(percent)
        else:
            with contextlib.suppress(KeyError):  # no series yet
                gauge.remove(namespace, rollout)

    def render(self) -> bytes:
        """The text exposition of the registry."""
        return generate_latest(self.registry)
