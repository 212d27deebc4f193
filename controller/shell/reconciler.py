"""One rollout's reconciler: observe from the caches, `decide()`, execute the one action, repeat.

Woken by watch events (its Deployments, their Pods, its Service and EndpointSlices), analysis
results and timers; it never polls the API server. Reads come from the informers' caches, every
reconcile. After our own write, its response is trusted over the cache only while the cache is
older than the write (an *expectation*, see :mod:`controller.shell.kube.expectations`): a lagging
cache never makes the reconciler repeat an action, and no local copy outlives the write's watch
echo, whether that echo arrives before, with or after the response — so a command annotation written
after our write is seen as soon as the watch delivers it. The state goes to the Service
annotation before anything acts on it; a scale is an absolute count, so repeating one after a
crash is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from controller.core.alerts.routing import Delivery
from controller.core.analysis.demand import DemandWindow
from controller.core.analysis.evaluate import AnalysisSummary, Verdict
from controller.core.config.model import Rollout
from controller.core.priority import Urgency, reconcile_urgency
from controller.core.rollout import (
    Command,
    Decision,
    DecisionKind,
    DeleteDeployment,
    Observed,
    PatchService,
    Persist,
    PreflightResult,
    RunPreflight,
    Scale,
    SpecChange,
    Wait,
    decide,
    shared_selector,
    spec_change,
    target_hash,
    waits_for_rollout_in_flight,
)
from controller.core.state import (
    COMMAND_ANNOTATION,
    STATE_ANNOTATION,
    BreachClocks,
    Phase,
    RolloutState,
    StateError,
    encode_state,
    read_state,
)
from controller.core.status import iso, status_document
from controller.shell import claim
from controller.shell.alertmanager.deliver import deliver_command
from controller.shell.analysis_runner import AnalysisReport, AnalysisRunner, restored
from controller.shell.command_annotation import parse_command
from controller.shell.gate import PriorityGate, urgency
from controller.shell.history import HistoryWriter
from controller.shell.kube import (
    DELETED,
    Conflict,
    Kube,
    KubeError,
    NotFound,
    ObjectRef,
    ServiceInfo,
)
from controller.shell.kube.expectations import DEFAULT_TTL, Expectations
from controller.shell.kube.retrying import AfterError, after_api_error
from controller.shell.lag import LagMeter, Wake
from controller.shell.metrics import Metrics
from controller.shell.observe import Caches, observe, preflight_pods
from controller.shell.preflight import check_autoscalers, check_world, probe_pods
from controller.shell.providers.provider import Provider

log = structlog.get_logger("ptc.reconciler")

ANALYSIS_PHASES = (Phase.PROGRESSING, Phase.HOLDING, Phase.FLIPPING, Phase.BAKING, Phase.PAUSED)
HISTORY_FLUSH_S = 5.0  # on stop, how long the last decisions may take to reach the ConfigMap


STALE_VIEW_WAIT = 2.0  # seconds at most; any watch event ends it sooner
RESYNC_SECONDS = 300.0  # re-decide from the caches at least this often (jittered ±20 %)


class StaleView(Exception):
    """A scale or delete was refused (409): the Deployment changed since the decision read it."""

    def __init__(self, deployment: str) -> None:
        super().__init__(f"deployment {deployment} changed since it was read")
        self.deployment = deployment


class RolloutReconciler:
    """Drives one rollout; `run()` until `stop()`."""

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

    # -- wiring ----------------------------------------------------------------------------

    def on_event(self, kind: str, event_type: str, obj: Any) -> None:
        """Informer callback: meet the expectations of our writes this event echoes; wake."""
        deleted = event_type == DELETED
        if kind == "services":
            self._own_service.observe(obj.name, obj.resource_version, deleted=deleted)
        elif kind == "deployments":
            self._own_scale.observe(obj.name, obj.resource_version, deleted=deleted)
        self.wake.set()

    async def _on_report(self, report: AnalysisReport) -> None:
        self._report = report
        self.lag.evaluation(
            self.clock() - report.summary.at, self.spec.step_analysis(report.step).interval
        )
        if report.demand is not None and report.demand.value is not None:
            window = self.spec.step_analysis(report.step).window
            self._demand.add(report.summary.at, report.demand.value, window)
        for m in report.summary.metrics:
            self.metrics.verdicts.labels(
                self.spec.namespace, self.spec.name, m.name, m.verdict.value
            ).inc()
            if m.value is not None:
                self.metrics.analysis_value.labels(
                    self.spec.namespace, self.spec.name, m.name, "canary"
                ).set(m.value)
            if m.stable is not None:
                self.metrics.analysis_value.labels(
                    self.spec.namespace, self.spec.name, m.name, "stable"
                ).set(m.stable)
        self.wake.set()

    def update_spec(self, spec: Rollout, generation: int) -> SpecChange:
        """Take a reloaded spec: applied now, or deferred (see `controller.core.rollout.reload`)."""
        change = spec_change(self.spec, spec, self._state_or_none())
        if change is SpecChange.DEFERRED:
            self._pending_spec = spec
            self._pending_generation = generation
        elif change is SpecChange.APPLIED:
            self._apply_spec(spec, generation)
        else:
            self._pending_spec = None
        return change

    def _state_or_none(self) -> RolloutState | None:
        svc = self.service()
        if svc is None:
            return None
        try:
            return read_state(svc.annotations)
        except StateError:
            return None

    @property
    def pending_spec(self) -> tuple[Rollout, int] | None:
        """The deferred config (spec, generation) waiting for the rollout in flight to end."""
        if self._pending_spec is None:
            return None
        return self._pending_spec, self._pending_generation

    def _apply_spec(self, spec: Rollout, generation: int) -> None:
        self.spec = spec
        self._spec_hash = spec.spec_hash()
        self.on_spec_change()
        self.generation = generation
        self._pending_spec = None
        if self._runner is not None:
            self._runner.update(spec)
            # Verdicts judged under the old spec no longer count (see `_summary`): a new one now.
            self._runner.evaluate_soon(self.clock())
        self.wake.set()

    async def alert(self, command: Command) -> Delivery:
        """Hand an alert's command to the next reconcile, where decide() applies it.

        It is persisted first, as the command annotation `ptc abort` writes (see
        `controller.shell.alertmanager.deliver`): it survives a failover and applies exactly once.
        The reconciler sees it as it sees a person's command: the watch delivers the write and
        wakes it, within milliseconds.
        """
        svc = self.service()
        if svc is None:
            raise NotFound(f"Service {self.spec.namespace}/{self.spec.service} not found")
        with urgency(Urgency.COMMAND):
            return await deliver_command(self.kube, self.spec, svc, command)

    def stop(self) -> None:
        """Ask the loop to end after the action in flight."""
        self._stopping = True
        self.wake.set()

    # -- observation -----------------------------------------------------------------------

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

    def observe(self, svc: ServiceInfo) -> Observed:
        """Everything decide() needs, from the caches (no API calls)."""
        capacity = demand = None
        if self._report is not None:
            capacity, demand = self._report.capacity, self._report.demand
            peak = self._demand.peak()
            if demand is not None and demand.value is not None and peak is not None:
                demand = replace(demand, value=peak)
        return observe(
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

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile until stopped."""
        structlog.contextvars.bind_contextvars(
            rollout=self.spec.name, namespace=self.spec.namespace
        )
        failures = 0
        try:
            while not self._stopping:
                self.wake.clear()
                try:
                    wait = await self.reconcile_once()
                    failures = 0
                except StaleView as stale:
                    # Decide again on the newer Deployment once the watch brings it.
                    self._log.info(
                        "deployment changed under us; waiting for the newer object",
                        deployment=stale.deployment,
                    )
                    await self._sleep(STALE_VIEW_WAIT)
                    continue
                except Conflict:
                    self._log.info("state changed under us; re-reading the Service")
                    await self._refresh_service()
                    continue
                except KubeError as exc:
                    plan = await self.after_api_error(exc, failures + 1)
                    failures += plan.counts_as_failure
                    await self._sleep(plan.delay * random.uniform(0.8, 1.2))
                    continue
                if wait is not None:
                    await self._wait(wait)
        finally:
            if self._runner is not None:
                await self._runner.stop()
                self._runner = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.history.flush(), HISTORY_FLUSH_S)
            await self.history.close()

    async def _sleep(self, seconds: float) -> None:
        await self.wake.sleep(seconds)

    def next_look(self, wait: Wait) -> datetime | None:
        """When to reconcile again after `wait` (None: at the next event).

        An expectation of ours that runs out is a deadline too: then decide on the cache.
        """
        until = wait.until
        for deadline in (self._own_service.deadline(), self._own_scale.deadline()):
            if deadline is not None and (until is None or deadline < until):
                until = deadline
        return until

    async def _wait(self, wait: Wait) -> None:
        """Sleep until the next look, an event, or the resync (whichever comes first).

        The resync re-decides from the caches every few minutes even when nothing seems to
        happen: a missed event, an expectation nobody cleared or a clock jump cannot leave a
        rollout waiting for good (a 24 h retention included).
        """
        until = self.next_look(wait)
        seconds = self.resync_seconds
        if until is not None:
            seconds = min(seconds, (until - self.clock()).total_seconds())
        if seconds > 0:
            await self._sleep(seconds)

    async def _refresh_service(self) -> None:
        with contextlib.suppress(NotFound):
            self._expect_service(
                await self.kube.get_service(self.spec.namespace, self.spec.service)
            )

    async def reconcile_once(self) -> Wait | None:
        """One decide() and its action; the Wait to sleep on, or None to go again at once.

        With a shared reconcile gate, a reconcile waits for a slot first: one that must act (a
        pending command, a rollback under way or a failed verdict) takes a reserved one at once,
        routine ones beyond their budget wait (controller.core.priority).
        """
        if self.reconcile_gate is None:
            return await self._reconcile()
        async with self.reconcile_gate.slot(self._urgency()):
            return await self._reconcile()

    def _urgency(self) -> Urgency:
        """How urgent the next reconcile is, from the cached Service and the latest verdict."""
        svc = self.service()
        if svc is None:
            return Urgency.ROUTINE
        try:
            state = read_state(svc.annotations)
        except StateError:
            return Urgency.ROUTINE
        failed = self._report is not None and self._report.verdict is Verdict.FAIL
        return reconcile_urgency(
            rolling_back=failed or (state is not None and state.phase is Phase.ROLLING_BACK),
            command=command_pending(parse_command(svc.annotations.get(COMMAND_ANNOTATION)), state),
        )

    async def _reconcile(self) -> Wait | None:
        svc = self.service()
        if svc is None:
            return self._problem(f"Service {self.spec.namespace}/{self.spec.service} not found")
        try:
            state = read_state(svc.annotations)
        except StateError as exc:
            return self._problem(f"cannot read {STATE_ANNOTATION}: {exc}")
        pending = self._pending_spec
        if pending is not None and not waits_for_rollout_in_flight(state, target_hash(pending)):
            self._log.info("applying the deferred config: a new rollout target")
            self._apply_spec(pending, self._pending_generation)
        self._sync_runner(state)
        observed = self.observe(svc)
        now = self.clock()
        command = parse_command(svc.annotations.get(COMMAND_ANNOTATION))
        decision = decide(self.spec, state, observed, self._summary(state), now, command)
        wait = decision.action
        if isinstance(wait, Wait) and wait.fresh_after is not None and self._runner is not None:
            self._runner.evaluate_soon(wait.fresh_after)  # a hold is over: judge it now
        self._last_decision = decision
        self._last_problem = None
        if not self.may_write() and not isinstance(decision.action, Wait | RunPreflight):
            return Wait(None)  # a follower watches but never writes
        # When the controller is behind, a rollback's or a command's writes go first (a
        # takeover's claim too: it is the first write of whatever the decision is).
        level = reconcile_urgency(
            rolling_back=decision.state.phase is Phase.ROLLING_BACK,
            command=command_pending(command, state),
        )
        if state is not None and self._must_claim(state, decision) and self.may_write():
            with urgency(level):
                await self._claim(svc, state)
            return None  # decide again on the Service as claimed
        structlog.contextvars.bind_contextvars(
            phase=decision.state.phase.value, step=decision.state.step
        )
        with urgency(level):
            await self._execute(decision, svc, state, observed)
        return decision.action if isinstance(decision.action, Wait) else None

    def _must_claim(self, state: RolloutState, decision: Decision) -> bool:
        """Whether the state was last written by another controller and we are about to act."""
        if state.writer in (None, self.identity):
            return False
        return not state.phase.terminal or not isinstance(decision.action, Wait)

    async def _claim(self, svc: ServiceInfo, state: RolloutState) -> None:
        """A new leader's first writes: each object the rollout writes, then the state as it is
        with our name as its writer (see :mod:`controller.shell.claim`).

        They move every resourceVersion, so a write a deposed leader still has on its way (sent
        in its term, applied late: a frozen process, a queue in the API server) fails its
        precondition instead of landing over what we decide. A Conflict here means such a
        write landed first: the reconciler requeues and we decide on it.
        """
        mark = claim.claim_mark(self.identity, self.clock())
        self._log.info("claiming the rollout", last_writer=state.writer, claim=mark)
        for claimed in await claim.claim_objects(self.kube, self.spec, state.target, mark):
            # the next scale's precondition is the claimed version, not the cache's older one
            self._own_scale.expect(claimed.name, claimed.resource_version, claimed.spec_replicas)
        await self._persist(svc, replace(state, writer=self.identity))

    async def after_api_error(self, exc: KubeError, failures: int) -> AfterError:
        """Say what a person must know about an API error; the requeue (see kube.retrying)."""
        self.metrics.api_errors.labels(type(exc).__name__).inc()
        plan = after_api_error(exc, failures)
        if plan.problem is not None:
            # A request no retry fixes: the log, `ptc status` and an Event, once per problem.
            if plan.problem != self._last_problem:
                self._last_problem = plan.problem
                self._log.error("api request refused", problem=plan.problem)
                with contextlib.suppress(KubeError):
                    await self.emit("Warning", "ApiRequestRefused", plan.problem)
        elif plan.counts_as_failure:
            self._log.warning("api error; retrying", error=str(exc), retry_in=plan.delay)
        else:
            self._log.info("not the leader any more; waiting", error=str(exc))
        return plan

    def _problem(self, message: str) -> Wait:
        if message != self._last_problem:
            self._log.warning("rollout problem", problem=message)
            self._last_problem = message
        return Wait(None)

    async def _execute(
        self,
        decision: Decision,
        svc: ServiceInfo,
        old: RolloutState | None,
        observed: Observed,
    ) -> None:
        action = decision.action
        new_state = replace(
            decision.state, writer=self.identity, breach=self._breach_clocks(decision.state)
        )
        name = type(action).__name__
        started = time.perf_counter()
        if isinstance(action, RunPreflight):
            await self._run_preflight(svc, observed)
            self._export(decision.state, observed)
            return
        if isinstance(action, Wait):
            if decision.reason != self._last_wait_reason:
                self._log.info("waiting", reason=decision.reason, until=iso(action.until))
                self._last_wait_reason = decision.reason
            if old is not None and new_state.breach != old.breach and self.may_write():
                # A breach clock started or stopped: persist it, or a restart would give the
                # canary a fresh `for:` (rare: clocks change when a breach begins or ends).
                self._log.info("breach clocks changed", breach=_clock_fields(new_state))
                await self._persist(
                    svc, replace(old, writer=self.identity, breach=new_state.breach)
                )
            self._export(decision.state, observed)
            return
        self._last_wait_reason = None
        if isinstance(action, Scale):
            # Only onto the Deployment this decision saw (our own unechoed write, else the
            # cache's): a person's scale since, or a new leader's, makes this a 409, not a
            # lost update.
            cached = self.caches.deployments.get(action.deployment)
            seen = self._own_scale.version(action.deployment) or (
                cached.resource_version if cached is not None else ""
            )
            try:
                version = await self.kube.scale(
                    self.spec.namespace, action.deployment, action.replicas, resource_version=seen
                )
            except Conflict as exc:
                raise StaleView(action.deployment) from exc
            self._own_scale.expect(action.deployment, version, action.replicas)
            await self._persist(svc, new_state)
        elif isinstance(action, DeleteDeployment):
            # Only the incarnation retention kept (uid in the state): one created under the same
            # name since is refused by the API server (409), and the next decide() says so.
            try:
                await self.kube.delete_deployment(
                    self.spec.namespace, action.deployment, uid=action.uid or None
                )
            except NotFound:
                pass  # gone already: what the action wanted
            except Conflict as exc:
                raise StaleView(action.deployment) from exc
            await self._persist(svc, new_state)
        elif isinstance(action, PatchService):
            patched = await self.kube.patch_service(
                self.spec.namespace,
                self.spec.service,
                resource_version=svc.resource_version,
                selector=action.selector,
                annotations={STATE_ANNOTATION: encode_state(new_state)},
            )
            self._expect_service(patched)
        elif isinstance(action, Persist):
            await self._persist(svc, new_state)
        # The state is written: its records go to the history ConfigMap, in the background. All
        # of them, not only the new one: those a killed leader wrote to the state but not to the
        # ConfigMap are filled in (the ConfigMap's fuller copies of the others win).
        self.history.add(new_state.target, decision.state.history)
        # The state is written: metrics say so now, not after the Event (its answer may be slow).
        self._export(decision.state, observed)
        self.metrics.actions.labels(name).observe(time.perf_counter() - started)
        self._log.info(
            "action taken",
            decision=decision.state.history[-1].decision if decision.state.history else None,
            action=name,
            reason=decision.reason,
            phase=decision.state.phase.value,
            step=decision.state.step,
        )
        if decision.event is not None:
            if decision.event.kind is DecisionKind.ROLLBACK:
                self.metrics.rollbacks.labels(self.spec.namespace, self.spec.name).inc()
            await self.kube.emit_event(
                self.spec.namespace,
                ObjectRef("Service", self.spec.namespace, self.spec.service, svc.uid),
                decision.event.type.value,
                decision.event.reason,
                decision.event.message,
            )

    async def emit(self, type_: str, reason: str, message: str) -> None:
        """An Event on the rollout's Service (best effort)."""
        svc = self.service()
        if svc is None:
            return
        await self.kube.emit_event(
            self.spec.namespace,
            ObjectRef("Service", self.spec.namespace, self.spec.service, svc.uid),
            type_,
            reason,
            message,
        )

    async def _persist(self, svc: ServiceInfo, state: RolloutState) -> None:
        current = self.service() or svc
        patched = await self.kube.patch_service(
            self.spec.namespace,
            self.spec.service,
            resource_version=current.resource_version,
            annotations={STATE_ANNOTATION: encode_state(state)},
        )
        self._expect_service(patched)

    async def _run_preflight(self, svc: ServiceInfo, observed: Observed) -> None:
        now = self.clock()
        shared = shared_selector(self.spec, svc.selector)
        findings = check_world(
            self.spec,
            shared,
            self.caches.deployments.get(self.spec.stable.deployment),
            self.caches.deployments.get(self.spec.canary.deployment),
            preflight_pods(self.spec, self.caches, shared),
        ).plus(check_autoscalers(self.spec, await self.kube.list_autoscalers(self.spec.namespace)))
        for warning in findings.warnings:
            self._log.warning("preflight warning", warning=warning)
            # once per distinct warning: a waiting preflight re-runs every few seconds
            if warning not in self._warned and self.may_write():
                await self.emit("Warning", "PreflightWarning", warning)
        self._warned = frozenset(findings.warnings)
        problems, waiting = findings.problems, findings.waiting
        if not problems and not waiting:
            probed = await probe_pods(self.spec, findings.probe_targets, now=now)
            problems, waiting = probed.problems, probed.waiting
        self._preflight = PreflightResult(now, problems, waiting, findings.headlines)
        self._log.info(
            "preflight",
            problems=list(problems),
            waiting=list(waiting),
            probed=len(findings.probe_targets),
        )

    def _breach_clocks(self, state: RolloutState) -> BreachClocks | None:
        """The runner's `for:` clocks, for the state to carry (None without a running analysis)."""
        runner = self._runner
        if runner is None or state.phase not in ANALYSIS_PHASES:
            return None
        since = runner.breach_since
        return BreachClocks(state.attempt, state.step, since) if since else None

    def _sync_runner(self, state: RolloutState | None) -> None:
        """Run analysis while the rollout carries canary traffic; judge the state's step."""
        # Only the leader queries: a standby would double the load on Prometheus.
        active = (
            state is not None
            and state.phase in ANALYSIS_PHASES
            and not self._stopping
            and self.may_write()
        )
        if self.provider is None or not (
            self.spec.analysis.metrics or self.spec.analysis.capacity_gate
        ):
            return
        if active and state is not None:
            step = min(state.step, len(self.spec.steps) - 1)
            if self._runner is None:
                # After a restart or failover the breach clocks go on where they were (same
                # attempt and step only: anything else is judged afresh).
                clocks = state.breach
                previous = None
                if clocks is not None and (clocks.attempt, clocks.step) == (
                    state.attempt,
                    state.step,
                ):
                    previous = restored(clocks.since, self.clock())
                    self._log.info("breach clocks restored", breach=_clock_fields(state))
                self._runner = AnalysisRunner(
                    self.spec,
                    self.provider,
                    self._on_report,
                    step=step,
                    previous=previous,
                    clock=self.clock,
                    spread=True,
                    gate=self.evaluation_gate,
                )
                self._runner.start()
            elif self._runner.step != step:
                self._runner.set_step(step)
        elif self._runner is not None:
            runner, self._runner = self._runner, None
            # The last attempt's verdicts and demand readings must not judge the next one.
            self._report = None
            self._demand.clear()
            asyncio.get_running_loop().create_task(
                runner.stop(), name=f"stop-runner:{self.spec.name}"
            )

    def _export(self, state: RolloutState, observed: Observed) -> None:
        ns, name = self.spec.namespace, self.spec.name
        self.metrics.set_phase(ns, name, state.phase)
        self.metrics.step.labels(ns, name).set(state.step)
        total = observed.endpoints.canary + observed.endpoints.stable
        actual = 100.0 * observed.endpoints.canary / total if total else 0.0
        self.metrics.weight_actual.labels(ns, name).set(actual)
        self.metrics.weight_desired.labels(ns, name).set(state.weight)
        share = observed.share.percent() if observed.share is not None else None
        self.metrics.set_weight_observed(ns, name, share)

    # -- status for the API ----------------------------------------------------------------

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
        observed = self.observe(svc) if svc is not None else None
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


def command_pending(command: Command | None, state: RolloutState | None) -> bool:
    """A command annotation not applied yet (it stays on the Service once applied)."""
    return command is not None and (state is None or state.last_command != command.id)


def _clock_fields(state: RolloutState) -> dict[str, str | None]:
    clocks = state.breach
    return {k: iso(t) for k, t in clocks.since.items()} if clocks is not None else {}


__all__ = ["RolloutReconciler"]
