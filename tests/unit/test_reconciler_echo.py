"""The reconciler against watch echoes that arrive before, with or after its writes' responses.

On a real API server the watch echo of a write often arrives *before* the write's response. A
reconciler that trusts its own write until "the echo" arrives then trusts it forever, and every
command written after it is ignored (issue 18). These tests force each ordering (see
`fake_cluster`), relists that drop the echo, and a lost echo, and drive `reconcile_once()` by
hand with a stepped clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.core.rollout import target_hash
from controller.core.state import STATE_ANNOTATION, Phase, RolloutState, encode_state, read_state
from controller.shell.metrics import Metrics
from controller.shell.reconciler import RolloutReconciler, StaleView
from tests.unit.fake_cluster import FakeCluster, FakeKube, SteppedClock, caches_for, populate
from tests.unit.rollout_model import T0, make_spec

ORDERS = ("before", "with", "after")
SPEC = make_spec(analysis={"interval": "10s", "metrics": []})
STABLE, CANARY = SPEC.stable.deployment, SPEC.canary.deployment


def state(**changes: Any) -> RolloutState:
    base: dict[str, Any] = {
        "phase": Phase.PROGRESSING,
        "target": target_hash(SPEC),
        "rollout": SPEC.name,
        "stable": STABLE,
        "canary": CANARY,
        "steps": len(SPEC.steps),
        "replicas": 4,
        "shared_selector": {"app": "zai-proxy"},
        "started_at": T0,
        "phase_since": T0,
    }
    base.update(changes)
    return RolloutState(**base)


@dataclass
class World:
    cluster: FakeCluster
    kube: FakeKube
    reconciler: RolloutReconciler
    clock: SteppedClock

    def state(self) -> RolloutState:
        """The state as the cluster has it (not as any cache does)."""
        raw = self.cluster.objects["services"]["zai-proxy"]["metadata"]["annotations"]
        found = read_state(raw)
        assert found is not None
        return found

    async def deliver(self) -> None:
        """Let every event written so far reach the informers (held ones included)."""
        await self.cluster.release()


@asynccontextmanager
async def world(
    initial: RolloutState,
    *,
    stable: int,
    canary: int,
    selector: dict[str, str] | None = None,
    ttl: timedelta = timedelta(seconds=30),
) -> AsyncIterator[World]:
    cluster = FakeCluster()
    populate(
        cluster,
        {STATE_ANNOTATION: encode_state(initial)},
        stable=stable,
        canary=canary,
        selector=selector,
    )
    caches = await caches_for(cluster)
    kube = FakeKube(cluster, caches)
    clock = SteppedClock(T0)
    reconciler = RolloutReconciler(
        SPEC, kube, caches, None, Metrics(), identity="ptc-test", clock=clock, expectation_ttl=ttl
    )  # type: ignore[arg-type]
    for kind in ("pods", "deployments", "services", "endpointslices"):
        getattr(caches, kind).subscribe(
            lambda event_type, obj, kind=kind: reconciler.on_event(kind, event_type, obj)
        )
    try:
        yield World(cluster, kube, reconciler, clock)
    finally:
        for kind in ("pods", "deployments", "services", "endpointslices"):
            await getattr(caches, kind).stop()


@pytest.mark.parametrize("order", ORDERS)
async def test_a_command_written_right_after_our_persist_is_acted_on_in_one_reconcile(
    order: str,
) -> None:
    async with world(state(), stable=3, canary=1) as w:
        w.kube.order = order
        await w.reconciler.reconcile_once()  # the split is in place: step-reached (a Persist)
        assert len(w.kube.service_patches) == 1
        assert w.state().step_reached_at == T0

        w.cluster.write_command("pause", "pause-1")  # `ptc pause`, right after our write
        await w.deliver()
        w.clock.step(1)
        await w.reconciler.reconcile_once()

        assert w.state().phase is Phase.PAUSED
        assert w.state().last_command == "pause-1"


@pytest.mark.parametrize("order", ORDERS)
async def test_a_command_written_right_after_the_flip_is_acted_on_in_one_reconcile(
    order: str,
) -> None:
    flipping = state(phase=Phase.FLIPPING, step=len(SPEC.steps), weight=75.0)
    async with world(flipping, stable=1, canary=4) as w:
        w.kube.order = order
        await w.reconciler.reconcile_once()  # the flip: selector pinned, state in one patch
        assert w.kube.service_patches[-1]["selector"] == {"app": "zai-proxy", "version": "v2"}
        assert w.state().phase is Phase.BAKING

        w.cluster.write_command("abort", "abort-1")
        await w.deliver()
        w.clock.step(1)
        await w.reconciler.reconcile_once()

        assert w.state().last_command == "abort-1"
        assert w.state().phase is Phase.ROLLING_BACK


@pytest.mark.parametrize("order", ORDERS)
async def test_a_command_in_the_writes_echo_window_is_seen_whatever_the_order(order: str) -> None:
    """The command lands between our write and its response: seen on the next reconcile."""
    async with world(state(), stable=3, canary=1) as w:
        w.kube.order = order
        commit = w.cluster.commit

        def commit_then_command(kind: str, obj: Any, event_type: str = "MODIFIED") -> Any:
            stored = commit(kind, obj, event_type)
            w.cluster.commit = commit  # type: ignore[method-assign]
            w.cluster.write_command("pause", "pause-2")
            return stored

        w.cluster.commit = commit_then_command  # type: ignore[method-assign]
        await w.reconciler.reconcile_once()
        await w.deliver()
        await w.reconciler.reconcile_once()

        assert w.state().last_command == "pause-2"
        assert w.state().phase is Phase.PAUSED


@pytest.mark.parametrize("order", ORDERS)
async def test_a_lagging_cache_never_repeats_a_scale_or_a_write(order: str) -> None:
    async with world(state(), stable=4, canary=0) as w:
        w.kube.order = order
        await w.reconciler.reconcile_once()  # scale the canary to 1, and record it
        assert w.kube.scales == [(CANARY, 1)]
        assert len(w.kube.service_patches) == 1

        # Echoes held (or not yet applied): decide on our writes, not on the cache.
        wait = await w.reconciler.reconcile_once()
        assert w.kube.scales == [(CANARY, 1)]
        assert len(w.kube.service_patches) == 1
        assert wait is not None  # for the canary pod to be Ready

        await w.deliver()
        await w.reconciler.reconcile_once()
        assert w.kube.scales == [(CANARY, 1)]
        assert len(w.kube.service_patches) == 1


async def test_a_flip_is_not_repeated_while_its_echo_is_held() -> None:
    flipping = state(phase=Phase.FLIPPING, step=len(SPEC.steps), weight=75.0)
    async with world(flipping, stable=1, canary=4) as w:
        w.kube.order = "after"
        await w.reconciler.reconcile_once()
        await w.reconciler.reconcile_once()
        await w.reconciler.reconcile_once()
        pinned = [p for p in w.kube.service_patches if p["selector"] is not None]
        assert len(pinned) == 1
        assert len(w.kube.service_patches) == 1  # baking waits for endpoints: no further write


async def test_a_scale_decided_before_a_status_update_is_refused_then_made_once() -> None:
    """A status update in flight when we decide: our scale's precondition refuses it (409);
    once the update arrives the scale is made, and a later update does not repeat it."""
    async with world(state(), stable=4, canary=0) as w:
        w.kube.order = "after"
        w.cluster.hold = True
        dep = json.loads(json.dumps(w.cluster.objects["deployments"][CANARY]))
        dep["status"]["observedGeneration"] = 2
        w.cluster.commit("deployments", dep)  # a status update, committed before our scale
        # Decided on the version before that update: the scale's precondition refuses it.
        with pytest.raises(StaleView):
            await w.reconciler.reconcile_once()
        assert w.kube.scales == []

        await w.cluster.release(1)  # the status update arrives
        await w.reconciler.reconcile_once()  # scale canary to 1 (+ Persist): both held
        assert w.kube.scales == [(CANARY, 1)]
        w.cluster.hold = True
        dep = json.loads(json.dumps(w.cluster.objects["deployments"][CANARY]))
        dep["status"]["observedGeneration"] = 3
        w.cluster.commit("deployments", dep)  # another status update, after our scale (held)
        await w.reconciler.reconcile_once()  # still trusts our write: no repeat
        assert w.kube.scales == [(CANARY, 1)]
        assert len(w.kube.service_patches) == 1


async def test_the_echo_of_our_earlier_write_does_not_end_the_trust_in_our_later_one() -> None:
    baking_next = state(phase=Phase.FLIPPING, step=len(SPEC.steps), weight=75.0)
    async with world(baking_next, stable=0, canary=4) as w:
        w.kube.order = "after"
        await w.reconciler.reconcile_once()  # the flip (held)
        await w.reconciler.reconcile_once()  # bake-started, written on top of the flip (held)
        assert len(w.kube.service_patches) == 2

        await w.cluster.release(1)  # the flip's echo; the cache is still one write behind
        await w.reconciler.reconcile_once()  # a wait for the bake, not a repeated write
        assert len(w.kube.service_patches) == 2
        assert w.state().bake_started_at == T0


async def test_a_hand_scale_after_our_echoed_scale_is_seen() -> None:
    """Our scale's echo came first; a later `kubectl scale` is not hidden by our write (#12)."""
    async with world(state(), stable=4, canary=0) as w:
        w.kube.order = "before"
        await w.reconciler.reconcile_once()
        assert w.kube.scales == [(CANARY, 1)]

        dep = json.loads(json.dumps(w.cluster.objects["deployments"][CANARY]))
        dep["spec"]["replicas"] = 3
        w.cluster.commit("deployments", dep)  # someone scales the canary by hand
        await w.deliver()

        svc = w.reconciler.service()
        assert svc is not None
        assert w.reconciler.read_observed(svc).canary.spec_replicas == 3


async def test_after_a_relist_that_dropped_the_echo_a_paused_rollout_sees_a_new_command() -> None:
    async with world(state(), stable=3, canary=1) as w:
        w.kube.order = "after"
        w.cluster.write_command("pause", "pause-1")
        await w.cluster.settle()
        await w.reconciler.reconcile_once()  # applies the pause: our write, echo held
        assert w.state().phase is Phase.PAUSED

        w.cluster.write_command("resume", "resume-1")  # queued behind our held echo
        caches = w.reconciler.caches
        await w.cluster.expire_history(caches.services, caches.deployments)  # 410: both lost
        w.clock.step(1)
        await w.reconciler.reconcile_once()

        assert w.state().last_command == "resume-1"
        assert w.state().phase is Phase.PROGRESSING


async def test_a_lost_echo_is_trusted_until_the_ttl_then_the_cache_wins() -> None:
    async with world(state(), stable=3, canary=1, ttl=timedelta(seconds=30)) as w:
        w.kube.order = "after"
        await w.reconciler.reconcile_once()
        written = w.cluster.objects["services"]["zai-proxy"]["metadata"]["resourceVersion"]
        w.cluster.held.clear()  # the echo is lost, and nothing tells us (no 410, no event)
        w.cluster.hold = False

        w.clock.step(29)
        svc = w.reconciler.service()
        assert svc is not None and svc.resource_version == written

        w.clock.step(2)
        with capture_logs() as logs:
            svc = w.reconciler.service()
        assert svc is not None and svc.resource_version != written  # the cache's, older
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["expectation expired"]


async def test_unmet_expectations_bound_the_reconcilers_sleep() -> None:
    async with world(state(), stable=3, canary=1, ttl=timedelta(seconds=30)) as w:
        w.kube.order = "after"
        wait = await w.reconciler.reconcile_once()  # Persist: go again at once
        assert wait is None
        wait = await w.reconciler.reconcile_once()  # now holding until the hold ends (1m)
        assert wait is not None and wait.until == T0 + timedelta(minutes=1)
        assert w.reconciler.next_look(wait) == T0 + timedelta(seconds=30)

        await w.deliver()
        assert w.reconciler.service() is not None
        assert w.reconciler.next_look(wait) == T0 + timedelta(minutes=1)


async def test_metrics_show_a_written_state_before_its_event_is_sent() -> None:
    """Whoever sees the Event (or the state) and then reads /metrics sees the same phase."""
    async with world(state(), stable=3, canary=1) as w:
        phases: list[float | None] = []
        emit = w.kube.emit_event

        async def emit_event(*args: Any) -> None:
            phases.append(
                w.reconciler.metrics.registry.get_sample_value(
                    "ptc_rollout_phase",
                    {"namespace": SPEC.namespace, "rollout": SPEC.name, "phase": "paused"},
                )
            )
            await emit(*args)

        w.kube.emit_event = emit_event  # type: ignore[method-assign]
        w.cluster.write_command("pause", "pause-1")
        await w.deliver()
        await w.reconciler.reconcile_once()
        assert w.state().phase is Phase.PAUSED
        assert phases == [1.0]


async def test_a_scale_onto_a_deployment_changed_since_it_was_read_is_refused() -> None:
    """Fencing: a decision taken on a stale Deployment (a person, or a new leader, wrote since)
    gets a 409 and changes nothing; the next decision is taken on the newer object."""
    async with world(state(), stable=4, canary=0) as w:
        w.kube.order = "after"
        w.cluster.hold = True
        dep = json.loads(json.dumps(w.cluster.objects["deployments"][CANARY]))
        dep["spec"]["replicas"] = 2
        w.cluster.commit("deployments", dep)  # someone scales the canary; our cache lags
        with pytest.raises(StaleView):
            await w.reconciler.reconcile_once()  # would scale the canary to 1
        assert w.kube.scales == []  # refused by the precondition: nothing changed
        assert w.cluster.objects["deployments"][CANARY]["spec"]["replicas"] == 2
        assert w.kube.service_patches == []


async def test_our_own_unechoed_scale_is_the_precondition_of_the_next_one() -> None:
    """Two scales of one Deployment before the first is echoed: the second is made onto our
    first write's version, not the cache's older one (which would be a false 409)."""
    async with world(state(), stable=1, canary=0) as w:
        w.kube.order = "after"
        await w.reconciler.reconcile_once()  # canary 0 -> 1 (held)
        assert w.kube.scales == [(CANARY, 1)]
        first = w.cluster.objects["deployments"][CANARY]["metadata"]["resourceVersion"]
        assert w.reconciler._own_scale.version(CANARY) == first
