"""A new leader's claim of a rollout: move every resourceVersion a deposed leader's write relies on.

Kubernetes has no precondition across objects and no fencing token, so a write the deposed leader
sent in its term (then froze, or the API server queued it) is applied whenever it arrives, unless
its own precondition fails. Each write the reconciler makes carries one — the Service patch the
Service's resourceVersion, the scale the Deployment's, the history PUT the ConfigMap's — so before
it acts, a new leader writes to each of those objects once, whatever their content:

1. the stable and canary Deployments: annotation ``ptc.dev/claim: <writer>/<time>`` (metadata
   only; the API server bumps ``generation`` but the pod template is untouched: no pod restarts);
2. the history ConfigMap: the same annotation (created empty when missing, so a late create
   fails too); best effort, like every history write: a failure is logged, not raised;
3. last, the Service: the state as it is, with the new leader as ``writer``.

The Service goes last because the state's writer is how a reconciler knows the claim is done
(``RolloutReconciler._must_claim``): a claim cut short is made again whole. A Deployment that
does not exist is skipped (nothing of ours can land on it: a scale of a missing Deployment is
404, and ptc never creates one). Up to 4 writes per rollout per takeover, made at the urgency of
what the rollout does next (a rollback's claim before routine ones; controller.core.priority).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime

import structlog

from controller.core.config.model import Rollout
from controller.core.rollout import Decision, Wait
from controller.core.state import RolloutState
from controller.shell import history
from controller.shell.kube import DeploymentInfo, Kube, KubeError, NotFound, NotLeader, ServiceInfo
from controller.shell.reconciler.actions import ReconcilerActions

log = structlog.get_logger("ptc.reconciler")

CLAIM_ANNOTATION = "ptc.dev/claim"


def claim_mark(writer: str, at: datetime) -> str:
    """The claim annotation's value: who claimed, and when (a new value every claim, so each
    one changes the object and moves its resourceVersion)."""
    return f"{writer}/{at.isoformat(timespec='milliseconds')}"


async def claim_objects(
    kube: Kube, spec: Rollout, revision: str, mark: str
) -> list[DeploymentInfo]:
    """Steps 1 and 2 above; the Deployments as claimed (their new resourceVersions)."""
    claimed = []
    for name in (spec.stable.deployment, spec.canary.deployment):
        with contextlib.suppress(NotFound):
            claimed.append(
                await kube.annotate_deployment(spec.namespace, name, {CLAIM_ANNOTATION: mark})
            )
    try:
        await history.claim(kube, spec.namespace, spec.service, revision, {CLAIM_ANNOTATION: mark})
    except NotLeader:
        raise
    except KubeError as exc:
        # The history is best effort and never holds a rollout up (see shell.history); left
        # unclaimed, a deposed leader's late write adds records that were in its state.
        log.warning("history configmap not claimed", error=str(exc))
    return claimed


class ReconcilerClaim(ReconcilerActions):
    """A new leader's claim of the rollout, before it acts on it."""

    def _must_claim(self, state: RolloutState, decision: Decision) -> bool:
        """Whether the state was last written by another controller and we are about to act."""
        if state.writer in (None, self.identity):
            return False
        return not state.phase.terminal or not isinstance(decision.action, Wait)

    async def _claim(self, svc: ServiceInfo, state: RolloutState) -> None:
        """A new leader's first writes: each object the rollout writes, then the state as it is
        with our name as its writer (see the module docstring).

        They move every resourceVersion, so a write a deposed leader still has on its way (sent
        in its term, applied late: a frozen process, a queue in the API server) fails its
        precondition instead of landing over what we decide. A Conflict here means such a
        write landed first: the reconciler requeues and we decide on it.
        """
        mark = claim_mark(self.identity, self.clock())
        self._log.info("claiming the rollout", last_writer=state.writer, claim=mark)
        for claimed in await claim_objects(self.kube, self.spec, state.revision, mark):
            # the next scale's precondition is the claimed version, not the cache's older one
            self._own_scale.expect(claimed.name, claimed.resource_version, claimed.spec_replicas)
        await self._persist(svc, replace(state, writer=self.identity))
