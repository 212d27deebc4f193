"""The reconciler's view of its rollout: wiring, the state, and what the caches show.

Reads come from the informers' caches, every reconcile. After our own write, its response is
trusted over the cache only while the cache is older than the write (an *expectation*, see
:mod:`controller.shell.kube.expectations`): a lagging cache never makes the reconciler repeat an
action, and no local copy outlives the write's watch echo, whether that echo arrives before,
with or after the response.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from controller.core.analysis.demand import DemandWindow
from controller.core.analysis.evaluate import AnalysisSummary
from controller.core.config.model import Rollout
from controller.core.rollout import Decision, Observed, PreflightResult, Wait
from controller.core.state import RolloutState, StateError, read_state
from controller.core.status import iso, status_document
from controller.shell.analysis_runner import AnalysisReport, AnalysisRunner
from controller.shell.gate import PriorityGate
from controller.shell.history import HistoryWriter
from controller.shell.kube import DELETED, Kube, ServiceInfo
from controller.shell.kube.expectations import DEFAULT_TTL, Expectations
from controller.shell.lag import LagMeter, Wake
from controller.shell.metrics import Metrics
from controller.shell.providers.provider import Provider
from controller.shell.snapshot import Caches, read_observed

log = structlog.get_logger("ptc.reconciler")

RESYNC_SECONDS = 300.0  # re-decide from the caches at least this often (jittered ±20 %)


class ReconcilerView:
    """A rollout's reconciler, the part that sees: its wiring, state and the caches' view."""

    def __init__(
        self,
        spec: Rollout,
        kube: Kube,
        caches: Caches,
        provider: Provider | None,
        metrics: Metrics,
        *,
        identity: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        may_write: Callable[[], bool] = lambda: True,
        on_spec_change: Callable[[], None] = lambda: None,
        expectation_ttl: timedelta = DEFAULT_TTL,
        evaluation_gate: PriorityGate | None = None,
        reconcile_gate: PriorityGate | None = None,
    ) -> None:
        self.spec = spec
        self.evaluation_gate = evaluation_gate  # shared by every rollout's analysis runner
        self.reconcile_gate = reconcile_gate  # shared by every rollout's reconciler
        self.kube = kube
        self.caches = caches
        self.provider = provider
        self.metrics = metrics
        self.identity = identity
        self.clock = clock
        self.may_write = may_write
        self.on_spec_change = on_spec_change
        self.lag = LagMeter(metrics)
        self.wake = Wake(on_lag=self.lag.reconcile)
        # Spread: 500 rollouts started together must not all re-decide in the same second.
        self.resync_seconds = RESYNC_SECONDS * random.uniform(0.8, 1.2)
        self._stopping = False
        self._log = log.bind(rollout=spec.name, namespace=spec.namespace)
        # our writes whose watch echo has not arrived: the Service, and each Deployment's replicas
        self._own_service: Expectations[ServiceInfo] = Expectations(
            caches.services, clock, ttl=expectation_ttl, what="services", logger=self._log
        )
        self._own_scale: Expectations[int] = Expectations(
            caches.deployments, clock, ttl=expectation_ttl, what="deployments", logger=self._log
        )
        self._preflight: PreflightResult | None = None
        self._warned: frozenset[str] = frozenset()  # preflight warnings already sent as Events
        self._report: AnalysisReport | None = None
        self._runner: AnalysisRunner | None = None
        self._last_decision: Decision | None = None
        self._last_problem: str | None = None
        self._last_wait_reason: str | None = None
        self._pending_spec: Rollout | None = None
        self._pending_generation = 1
        self._demand = DemandWindow()
        self.generation = 1  # the config generation this reconciler's spec comes from
        self._spec_hash = spec.spec_hash()  # reports judged under another spec do not count
        # the full decision history (the annotation keeps the last few): best effort
        self.history = HistoryWriter(kube, spec.namespace, spec.service)

    def on_event(self, kind: str, event_type: str, obj: Any) -> None:
        """Informer callback: meet the expectations of our writes this event echoes; wake."""
        deleted = event_type == DELETED
        if kind == "services":
            self._own_service.saw_event(obj.name, obj.resource_version, deleted=deleted)
        elif kind == "deployments":
            self._own_scale.saw_event(obj.name, obj.resource_version, deleted=deleted)
        self.wake.set()

    def _state_or_none(self) -> RolloutState | None:
        svc = self.service()
        if svc is None:
            return None
        try:
            return read_state(svc.annotations)
        except StateError:
            return None

    def service(self) -> ServiceInfo | None:
        """The newest Service known: the cache's, or our write's response while the cache lags it.

        Read afresh on every reconcile, so commands come from the newest object too.
        """
        own = self._own_service.get(self.spec.service)
        return own if own is not None else self.caches.services.get(self.spec.service)

    def _pending_scales(self) -> dict[str, int]:
        """Replicas we set whose watch echo has not arrived yet, by Deployment."""
        pending = {}
        for name in (self.spec.stable.deployment, self.spec.canary.deployment):
            replicas = self._own_scale.get(name)
            if replicas is not None:
                pending[name] = replicas
        return pending

    def _expect_service(self, svc: ServiceInfo) -> None:
        if not self._own_service.expect(svc.name, svc.resource_version, svc):
            # the watch echo overtook the response: the cache already has this write
            self._log.debug("service write already echoed", resource_version=svc.resource_version)

    def read_observed(self, svc: ServiceInfo) -> Observed:
        """Everything decide() needs, from the caches (no API calls)."""
        capacity = demand = None
        if self._report is not None:
            capacity, demand = self._report.capacity, self._report.demand
            peak = self._demand.peak()
            if demand is not None and demand.value is not None and peak is not None:
                demand = replace(demand, value=peak)
        return read_observed(
            self.spec,
            self.caches,
            svc,
            self._pending_scales(),
            preflight=self._preflight,
            capacity=capacity,
            demand=demand,
            share=self._report.share if self._report is not None else None,
        )

    def _summary(self, state: RolloutState | None) -> AnalysisSummary | None:
        """The verdicts decide() is shown: for the state's step, under the spec in force.

        A report judged under an earlier spec (thresholds since reloaded) neither promotes nor
        rolls back; the runner re-evaluates at once after a reload.
        """
        report = self._report
        if (
            report is None
            or state is None
            or report.step != min(state.step, len(self.spec.steps) - 1)
            or report.spec_hash != self._spec_hash
        ):
            return None
        return report.summary

    def next_look(self, wait: Wait) -> datetime | None:
        """When to reconcile again after `wait` (None: at the next event).

        An expectation of ours that runs out is a deadline too: then decide on the cache.
        """
        until = wait.until
        for deadline in (self._own_service.deadline(), self._own_scale.deadline()):
            if deadline is not None and (until is None or deadline < until):
                until = deadline
        return until

    def status(self) -> dict[str, Any]:
        """The rollout as /api/v1/rollouts shows it (see `controller.core.status`)."""
        svc = self.service()
        state: RolloutState | None = None
        error = None
        if svc is not None:
            try:
                state = read_state(svc.annotations)
            except StateError as exc:
                error = str(exc)
        observed = self.read_observed(svc) if svc is not None else None
        report = self._report
        analysis = None
        if report is not None:
            analysis = {
                "at": iso(report.summary.at),
                "step": report.step,
                "verdict": report.summary.verdict.value,
                "metrics": [m.to_json() for m in report.summary.metrics],
            }
        return status_document(
            name=self.spec.name,
            namespace=self.spec.namespace,
            service=self.spec.service,
            stable=self.spec.stable.deployment,
            canary=self.spec.canary.deployment,
            steps=len(self.spec.steps),
            state=state,
            replicas={
                "stable": {
                    "spec": observed.stable.spec_replicas,
                    "ready": observed.stable.ready_replicas,
                },
                "canary": {
                    "spec": observed.canary.spec_replicas,
                    "ready": observed.canary.ready_replicas,
                },
            }
            if observed
            else None,
            endpoints={"canary": observed.endpoints.canary, "stable": observed.endpoints.stable}
            if observed
            else None,
            selector=svc.selector if svc else None,
            analysis=analysis,
            waiting=self._last_decision.reason if self._last_decision else None,
            problem=error or self._last_problem,
            now=self.clock(),
            generation=self.generation,
            pending_config=self._pending_spec is not None,
            lag=self.lag.latest.document(),
            observed_share=report.share.percent() if report and report.share else None,
        )
