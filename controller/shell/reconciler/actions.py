"""The reconciler's writes: the one action of a decision, then the state, the history, the Event.

The state goes to the Service annotation before anything acts on it; a scale is an absolute
count, so repeating one after a crash is harmless. A scale or delete decided on a Deployment that
changed since is refused by the API server (409) and becomes :class:`StaleView`.
"""

from __future__ import annotations

import time
from dataclasses import replace

from controller.core.rollout import (
    Decision,
    DecisionKind,
    DeleteDeployment,
    Observed,
    PatchService,
    Persist,
    PreflightResult,
    RunPreflight,
    Scale,
    Wait,
    shared_selector,
)
from controller.core.state import STATE_ANNOTATION, RolloutState, encode_state
from controller.core.status import iso
from controller.shell.kube import Conflict, NotFound, ObjectRef, ServiceInfo
from controller.shell.preflight import check_autoscalers, check_world, probe_pods
from controller.shell.reconciler.analysis import ReconcilerAnalysis, clock_fields
from controller.shell.snapshot import preflight_pods


class StaleView(Exception):
    """A scale or delete was refused (409): the Deployment changed since the decision read it."""

    def __init__(self, deployment: str) -> None:
        super().__init__(f"deployment {deployment} changed since it was read")
        self.deployment = deployment


class ReconcilerActions(ReconcilerAnalysis):
    """What a rollout's reconciler does with a decision: the one action, the state, the Event."""

    async def _execute(
        self, decision: Decision, svc: ServiceInfo, old: RolloutState | None, observed: Observed
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
                self._log.info("breach clocks changed", breach=clock_fields(new_state))
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
        self.history.add(new_state.revision, decision.state.history)
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

    def _export(self, state: RolloutState, observed: Observed) -> None:
        ns, name = self.spec.namespace, self.spec.name
        self.metrics.set_phase(ns, name, state.phase)
        self.metrics.step.labels(ns, name).set(state.step)
        total = observed.endpoints.canary + observed.endpoints.stable
        actual = 100.0 * observed.endpoints.canary / total if total else 0.0
        self.metrics.weight_actual.labels(ns, name).set(actual)
        self.metrics.weight_desired.labels(ns, name).set(state.progress.weight)
        share = observed.share.percent() if observed.share is not None else None
        self.metrics.set_weight_observed(ns, name, share)
