"""One rollout's reconciler: observe from the caches, `decide()`, execute the one action, repeat.

Woken by watch events (its Deployments, their Pods, its Service and EndpointSlices), analysis
results and timers; it never polls the API server. The loop requeues on errors (one retry layer:
see :mod:`controller.shell.kube.retrying`), re-decides at least every few minutes (the resync),
and sends each reconcile through the shared priority gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import structlog

from controller.core.alerts.routing import Delivery
from controller.core.analysis.evaluate import Verdict
from controller.core.config.model import Rollout
from controller.core.priority import Urgency, reconcile_urgency
from controller.core.rollout import (
    Command,
    RunPreflight,
    SpecChange,
    Wait,
    decide,
    spec_change,
    target_hash,
    waits_for_rollout_in_flight,
)
from controller.core.state import (
    COMMAND_ANNOTATION,
    STATE_ANNOTATION,
    Phase,
    RolloutState,
    StateError,
    read_state,
)
from controller.shell.alertmanager.deliver import deliver_command
from controller.shell.command_annotation import parse_command
from controller.shell.gate import urgency
from controller.shell.kube import Conflict, KubeError, NotFound
from controller.shell.kube.retrying import AfterError, after_api_error
from controller.shell.reconciler.actions import StaleView
from controller.shell.reconciler.claim import ReconcilerClaim

HISTORY_FLUSH_S = 5.0  # on stop, how long the last decisions may take to reach the ConfigMap
STALE_VIEW_WAIT = 2.0  # seconds at most; any watch event ends it sooner


class RolloutReconciler(ReconcilerClaim):
    """Drives one rollout; `run()` until `stop()`."""

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
        observed = self.read_observed(svc)
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


def command_pending(command: Command | None, state: RolloutState | None) -> bool:
    """A command annotation not applied yet (it stays on the Service once applied)."""
    return command is not None and (state is None or state.last_command != command.id)
