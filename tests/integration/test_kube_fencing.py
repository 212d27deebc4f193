"""Writes are fenced to leadership: not sent once it ran out, cut short when it runs out, and the
scale carries a resourceVersion precondition so a write decided on a stale view gets 409."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.core.priority import Urgency
from controller.sandbox.apiserver import ApiServer
from controller.sandbox.workload import Workload
from controller.shell.kube import Conflict, Kube, NotFound, NotLeader
from tests.integration.conftest import FAST
from tests.sandbox.conftest import deployment, service, wait_until

NS = "default"
T0 = "2026-01-01T00:00:00Z"


@pytest.fixture
async def fenced(api_server: ApiServer, workload: Workload, tmp_path: Path) -> AsyncIterator[Kube]:
    api_server.create(service("web", {"app": "web"}))
    api_server.create(deployment("web", replicas=1, version="v1"))
    kube = await Kube.connect(str(api_server.write_kubeconfig(tmp_path / "kc")), policy=FAST)
    try:
        yield kube
    finally:
        await kube.close()


def scales(api: ApiServer) -> int:
    return api.count(verb="patch", resource="deployments/scale")


async def test_a_write_is_not_sent_once_leadership_ran_out(
    api_server: ApiServer, fenced: Kube
) -> None:
    for left in (None, 0.0, -3.0):
        fenced.fence = lambda left=left: left  # type: ignore[misc]
        with pytest.raises(NotLeader, match="not sent"):
            await fenced.scale(NS, "web", 3)
    assert scales(api_server) == 0
    assert api_server.get("Deployment", "web", NS)["spec"]["replicas"] == 1
    # Reads are not fenced: a follower keeps its view.
    assert (await fenced.get_deployment(NS, "web")).spec_replicas == 1
    fenced.fence = lambda: 5.0
    await fenced.scale(NS, "web", 3)
    assert api_server.get("Deployment", "web", NS)["spec"]["replicas"] == 3


async def test_a_write_queued_for_a_connection_slot_is_not_sent_once_leadership_ran_out(
    api_server: ApiServer, fenced: Kube
) -> None:
    """The fence is read again once the request holds its slot, right before it is sent: a
    write that waited behind others (a controller that is behind) does not go out late."""
    leader = [True]
    fenced.fence = lambda: 5.0 if leader[0] else 0.0
    slots = fenced._transport.slots
    async with contextlib.AsyncExitStack() as busy:
        for _ in range(slots.policy.capacity):
            await busy.enter_async_context(slots.slot(Urgency.ROLLBACK))
        write = asyncio.create_task(fenced.scale(NS, "web", 3))
        for _ in range(100):  # it passed its first check and waits for a slot
            if slots.waiting():
                break
            await asyncio.sleep(0.01)
        assert slots.waiting(), "the write should be queued at the gate"
        leader[0] = False
    with pytest.raises(NotLeader, match="not sent"):
        await write
    assert scales(api_server) == 0
    assert api_server.get("Deployment", "web", NS)["spec"]["replicas"] == 1


async def test_a_write_still_queued_when_leadership_runs_out_says_it_was_not_sent(
    api_server: ApiServer, fenced: Kube
) -> None:
    # Unlike a write cut short in flight ("may or may not have been applied"): this one never
    # left the process, and the log line must not leave the SRE guessing.
    fenced.fence = lambda: 0.3
    slots = fenced._transport.slots
    async with contextlib.AsyncExitStack() as busy:
        for _ in range(slots.policy.capacity):
            await busy.enter_async_context(slots.slot(Urgency.ROLLBACK))
        with pytest.raises(NotLeader, match="not sent, leadership ran out while it waited"):
            await fenced.scale(NS, "web", 3)
    assert scales(api_server) == 0


async def test_a_retry_is_not_sent_after_leadership_ran_out(
    api_server: ApiServer, fenced: Kube
) -> None:
    # leader until the first attempt went out, deposed before the retry
    fenced.fence = lambda: 5.0 if scales(api_server) == 0 else 0.0
    api_server.set_faults(error_rate=1.0, resources={"deployments/scale"})
    with pytest.raises(NotLeader):
        await fenced.scale(NS, "web", 3)
    assert scales(api_server) == 1  # the retry never left this process


async def test_a_write_is_cut_short_when_leadership_runs_out_in_flight(
    api_server: ApiServer, fenced: Kube
) -> None:
    fenced.fence = lambda: 0.2
    api_server.set_faults(latency=1.5, resources={"deployments/scale"})
    with pytest.raises(NotLeader, match="cut short"):
        await fenced.scale(NS, "web", 3)


async def test_lease_writes_and_events_are_not_fenced(api_server: ApiServer, fenced: Kube) -> None:
    from datetime import UTC, datetime

    fenced.fence = lambda: None
    at = datetime(2026, 1, 1, tzinfo=UTC)
    lease = await fenced.create_lease(
        NS, "ptc", holder="me", duration_seconds=15, acquire_time=at, renew_time=at
    )
    assert lease.holder == "me"
    svc = await fenced.get_service(NS, "web")
    assert await fenced.emit_event(NS, svc.ref(), "Normal", "LeaderLost", "standing by")


async def test_scale_with_a_stale_resource_version_is_refused(
    api_server: ApiServer, fenced: Kube
) -> None:
    seen = (await fenced.get_deployment(NS, "web")).resource_version
    # Someone (the new leader) scales after we read.
    api_server.patch("Deployment", "web", {"spec": {"replicas": 2}}, subresource="scale")
    with pytest.raises(Conflict):
        await fenced.scale(NS, "web", 5, resource_version=seen)
    assert api_server.get("Deployment", "web", NS)["spec"]["replicas"] == 2
    current = (await fenced.get_deployment(NS, "web")).resource_version
    await fenced.scale(NS, "web", 5, resource_version=current)
    assert api_server.get("Deployment", "web", NS)["spec"]["replicas"] == 5


async def test_a_claim_annotation_moves_the_resource_version_and_restarts_no_pod(
    api_server: ApiServer, workload: Workload, fenced: Kube
) -> None:
    """What a real API server does with a metadata-only patch of a Deployment: a new
    resourceVersion (so a scale sent with the old one gets 409), generation + 1 (Deployment
    annotations are copied to ReplicaSets), the pod template untouched (no pod replaced)."""
    await wait_until(api_server.store, lambda: _pods(api_server) != {}, 5)
    pods = _pods(api_server)
    before = await fenced.get_deployment(NS, "web")
    claimed = await fenced.annotate_deployment(NS, "web", {"ptc.dev/claim": "ctl-b/1"})
    assert claimed.resource_version != before.resource_version
    assert claimed.generation == before.generation + 1
    assert claimed.spec_replicas == before.spec_replicas
    raw = api_server.get("Deployment", "web", NS)
    assert raw["metadata"]["annotations"]["ptc.dev/claim"] == "ctl-b/1"
    with pytest.raises(Conflict):  # the deposed leader's scale, sent with what it had read
        await fenced.scale(NS, "web", 5, resource_version=before.resource_version)
    await wait_until(
        api_server.store,
        lambda: (
            api_server.get("Deployment", "web", NS)["status"].get("observedGeneration")
            == claimed.generation
        ),
        5,
    )
    assert _pods(api_server) == pods  # the same pods, none replaced
    # The same value again is no change: a real server keeps the resourceVersion.
    again = await fenced.annotate_deployment(NS, "web", {"ptc.dev/claim": "ctl-b/1"})
    assert (
        again.resource_version
        == api_server.get("Deployment", "web", NS)["metadata"]["resourceVersion"]
    )
    assert again.generation == claimed.generation


async def test_a_claim_annotation_fences_a_configmap_put(fenced: Kube) -> None:
    version = await fenced.write_configmap(NS, "ptc-history-web", {"k": "v"}, resource_version=None)
    moved = await fenced.annotate_configmap(NS, "ptc-history-web", {"ptc.dev/claim": "ctl-b/1"})
    assert moved != version
    with pytest.raises(Conflict):  # the deposed leader's history write, read before the claim
        await fenced.write_configmap(NS, "ptc-history-web", {"k": "w"}, resource_version=version)
    assert (await fenced.get_configmap(NS, "ptc-history-web"))[0] == {"k": "v"}
    with pytest.raises(NotFound):
        await fenced.annotate_configmap(NS, "nothing-here", {"ptc.dev/claim": "ctl-b/1"})


def _pods(api: ApiServer) -> dict[str, str]:
    """The web Deployment's pods: name -> uid."""
    return {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in api.list("Pod", label_selector="app=web")
        if "deletionTimestamp" not in p["metadata"]
    }
