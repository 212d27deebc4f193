"""Writes are fenced to leadership: not sent once it ran out, cut short when it runs out, and the
scale carries a resourceVersion precondition so a write decided on a stale view gets 409."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.sandbox.apiserver import ApiServer
from controller.sandbox.workload import Workload
from controller.shell.kube import Conflict, Kube, NotLeader
from tests.integration.conftest import FAST
from tests.sandbox.conftest import deployment, service

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


async def test_a_retry_is_not_sent_after_leadership_ran_out(
    api_server: ApiServer, fenced: Kube
) -> None:
    budget = iter([5.0, 0.0])  # leader for the first attempt, deposed before the retry
    fenced.fence = lambda: next(budget)
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
