"""Informers against the sandbox: sync, events, 410 relists, reconnects, clean shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.sandbox.apiaccess import rule
from controller.sandbox.apiserver import ApiServer
from controller.shell.kube import (
    ADDED,
    DELETED,
    MODIFIED,
    DeploymentInfo,
    EndpointSliceInfo,
    Forbidden,
    Kube,
    PodInfo,
    ServiceInfo,
    Unavailable,
)
from tests.integration.conftest import FAST, eventually
from tests.sandbox.conftest import deployment, service

NS = "default"


class Recorder:
    """A subscriber that keeps (event_type, name) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def __call__(self, event_type: str, obj: Any) -> None:
        self.events.append((event_type, obj))

    def names(self, event_type: str | None = None) -> list[str]:
        return [o.name for t, o in self.events if event_type in (None, t)]


async def test_initial_sync_fills_the_cache_and_notifies_added(
    world: ApiServer, kube: Kube
) -> None:
    pods = kube.informer("pods", NS)
    seen = Recorder()
    pods.subscribe(seen)
    await pods.start()
    await pods.wait_synced(2)
    assert pods.synced
    items = pods.items()
    assert len(items) == 3 and all(isinstance(p, PodInfo) for p in items)
    assert {p.deployment for p in items} == {"web", "web-v2"}
    assert sorted(seen.names(ADDED)) == sorted(p.name for p in items)
    assert pods.get(items[0].name) == items[0]
    assert pods.get("nope") is None
    assert pods.stats.lists == 1 and pods.stats.relists == 0


async def test_informers_are_shared_per_kind_and_namespace(kube: Kube) -> None:
    assert kube.informer("pods", NS) is kube.informer("pods", NS)
    assert kube.informer("pods", NS) is not kube.informer("pods", "other")
    assert kube.informer("pods", NS) is not kube.informer("services", NS)  # type: ignore[comparison-overlap]
    with pytest.raises(ValueError):
        kube.informer("configmaps", NS)  # type: ignore[call-overload]


async def test_scale_is_seen_as_deployment_and_pod_events(world: ApiServer, kube: Kube) -> None:
    deployments = kube.informer("deployments", NS)
    pods = kube.informer("pods", NS)
    dep_events, pod_events = Recorder(), Recorder()
    deployments.subscribe(dep_events)
    pods.subscribe(pod_events)
    await deployments.start()
    await pods.start()
    await deployments.wait_synced(2)
    await pods.wait_synced(2)
    dep_events.events.clear()
    pod_events.events.clear()

    await kube.scale(NS, "web-v2", 3)

    def canary() -> DeploymentInfo | None:
        return deployments.get("web-v2")

    await eventually(lambda: (d := canary()) is not None and d.ready_replicas == 3)
    assert any(t == MODIFIED and o.name == "web-v2" for t, o in dep_events.events)
    await eventually(lambda: sum(p.ready for p in pods.items() if p.deployment == "web-v2") == 3)
    new = [o for t, o in pod_events.events if t == ADDED and o.deployment == "web-v2"]
    assert len({p.name for p in new}) == 2 and not any(p.ready for p in new)
    # readiness arrives as a MODIFIED event of the same pod
    ready_updates = [o for t, o in pod_events.events if t == MODIFIED and o.ready]
    assert {p.name for p in new} <= {p.name for p in ready_updates}

    await kube.scale(NS, "web-v2", 1)
    await eventually(lambda: len([p for p in pods.items() if p.deployment == "web-v2"]) == 1)
    assert len(pod_events.names(DELETED)) == 2


async def test_endpointslices_and_services(world: ApiServer, kube: Kube) -> None:
    slices = kube.informer("endpointslices", NS)
    services = kube.informer("services", NS)
    await slices.start()
    await services.start()
    await slices.wait_synced(2)
    await services.wait_synced(2)

    def web_slice() -> EndpointSliceInfo:
        (only,) = [s for s in slices.items() if s.service == "web"]
        return only

    await eventually(lambda: len(web_slice().endpoints) == 3)
    assert all(e.ready and e.serving and not e.terminating for e in web_slice().endpoints)
    assert all(e.pod and e.pod.startswith("web-") for e in web_slice().endpoints)

    svc = services.get("web")
    assert isinstance(svc, ServiceInfo)
    await kube.patch_service(
        NS, "web", resource_version=svc.resource_version, selector={"app": "web", "version": "v2"}
    )
    await eventually(lambda: dict(services.get("web").selector).get("version") == "v2")  # type: ignore[union-attr]
    await eventually(lambda: len(web_slice().endpoints) == 1)


async def test_relists_after_410_and_sees_later_changes(world: ApiServer, kube: Kube) -> None:
    services = kube.informer("services", NS)
    seen = Recorder()
    services.subscribe(seen)
    await services.start()
    await services.wait_synced(2)
    world.create(service("other", {"app": "other"}))
    await eventually(lambda: services.get("other") is not None)

    # compaction, a cut stream and writes while disconnected: only a relist can see them
    world.compact()
    world.cut_watches()
    world.create(service("third", {"app": "third"}))
    world.delete("Service", "other")
    await eventually(lambda: services.get("third") is not None and services.get("other") is None)
    assert services.stats.relists >= 1
    # the relist's diff was announced like live events
    assert "third" in seen.names(ADDED) and "other" in seen.names(DELETED)

    # and the watch resumed from the relist: later changes arrive again
    world.patch("Service", "third", {"metadata": {"annotations": {"after": "relist"}}})
    await eventually(lambda: services.get("third").annotations.get("after") == "relist")  # type: ignore[union-attr]


async def test_relist_diff_announces_only_real_changes(world: ApiServer, kube: Kube) -> None:
    deployments = kube.informer("deployments", NS)
    seen = Recorder()
    deployments.subscribe(seen)
    await deployments.start()
    await deployments.wait_synced(2)
    seen.events.clear()
    world.compact()
    world.cut_watches()
    world.create(deployment("web-v3", replicas=0, version="v3"))
    await eventually(lambda: deployments.get("web-v3") is not None)
    # unchanged web / web-v2 are not re-announced by the relist
    assert "web" not in seen.names() and "web-v2" not in seen.names()


async def test_reconnects_after_cut_streams(world: ApiServer, kube: Kube) -> None:
    services = kube.informer("services", NS)
    await services.start()
    await services.wait_synced(2)
    world.reset_counts()
    for i in range(3):
        # cut only once the (re)opened watch is registered, so every cut really hits one
        await eventually(lambda i=i: world.count(verb="watch", resource="services") == i + 1)  # type: ignore[misc]
        assert world.cut_watches(abort=i % 2 == 1) == 1  # clean end, then a dropped connection
        world.create(service(f"s{i}", {"app": f"s{i}"}))
        await eventually(lambda i=i: services.get(f"s{i}") is not None)  # type: ignore[misc]
    assert services.stats.reconnects >= 3
    assert services.stats.relists == 0  # history was kept: resumed, no relist needed
    assert services.stats.lists == 1


async def test_watch_rotates_on_timeout_seconds(api_server: ApiServer, kubeconfig: Path) -> None:
    policy = replace(FAST, watch_timeout=1, healthy_after=0.2)
    client = await Kube.connect(str(kubeconfig), policy=policy)
    try:
        services = client.informer("services", NS)
        await services.start()
        await services.wait_synced(2)
        api_server.reset_counts()
        await eventually(lambda: api_server.count(verb="watch", resource="services") >= 2, 4)
        api_server.create(service("late"))
        await eventually(lambda: services.get("late") is not None)
        assert services.stats.reconnects == 0  # rotation is not a reconnect
        assert services.stats.lists == 1
    finally:
        await client.close()


async def test_server_outage_backs_off_then_recovers(world: ApiServer, kube: Kube) -> None:
    services = kube.informer("services", NS)
    await services.start()
    await services.wait_synced(2)
    world.set_faults(error_rate=1.0, verbs={"watch", "list"})
    world.cut_watches()
    await eventually(lambda: services.stats.reconnects >= 3)
    watches_during_outage = world.count(verb="watch")
    assert isinstance(services.last_error, Unavailable)
    world.clear_faults()
    world.create(service("after-outage"))
    await eventually(lambda: services.get("after-outage") is not None)
    # backoff, not a busy loop: a handful of attempts in the outage, not thousands
    assert watches_during_outage < 50


async def test_stop_cancels_cleanly_and_leaves_no_tasks(world: ApiServer, kube: Kube) -> None:
    informers = [kube.informer(k, NS) for k in ("pods", "deployments", "services")]
    for inf in informers:
        await inf.start()
        await inf.start()  # idempotent
    for inf in informers:
        await inf.wait_synced(2)
    for inf in informers:
        await inf.stop()
        assert not inf.running and not inf.synced
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ptc-informer")]
    # a stopped informer can be started again and lists afresh
    await informers[0].start()
    await informers[0].wait_synced(2)
    assert informers[0].stats.lists == 2


async def test_close_stops_all_informers(world: ApiServer, kubeconfig: Path) -> None:
    client = await Kube.connect(str(kubeconfig), policy=FAST)
    inf = client.informer("pods", NS)
    await inf.start()
    await inf.wait_synced(2)
    await client.close()
    assert not inf.running
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ptc-informer")]


async def test_unsubscribe_and_failing_callbacks(world: ApiServer, kube: Kube) -> None:
    services = kube.informer("services", NS)
    kept, dropped = Recorder(), Recorder()

    def broken(event_type: str, obj: Any) -> None:
        raise RuntimeError("subscriber bug")

    services.subscribe(broken)
    services.subscribe(kept)
    unsubscribe = services.subscribe(dropped)
    unsubscribe()
    unsubscribe()  # idempotent
    with capture_logs() as logs:
        await services.start()
        await services.wait_synced(2)
        world.create(service("x"))
        await eventually(lambda: "x" in kept.names())
    assert dropped.events == []
    assert any(e["event"] == "informer callback failed" for e in logs)


async def test_wait_synced_raises_forbidden_at_once(api_server: ApiServer, tmp_path: Path) -> None:
    api_server.add_token("t", "system:serviceaccount:ptc:ptc", [rule("", "services", "get")])
    client = await Kube.connect(
        str(api_server.write_kubeconfig(tmp_path / "kc", token="t")), policy=FAST
    )
    try:
        pods = client.informer("pods", NS)
        await pods.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(Forbidden, match="cannot list"):
            await pods.wait_synced(5)
        assert loop.time() - start < 2
    finally:
        await client.close()


async def test_wait_synced_times_out_as_unavailable(api_server: ApiServer, kube: Kube) -> None:
    api_server.set_faults(error_rate=1.0, verbs={"list"})
    pods = kube.informer("pods", NS)
    await pods.start()
    with pytest.raises(Unavailable, match=r"not synced within 0\.3s"):
        await pods.wait_synced(0.3)
    with pytest.raises(RuntimeError):
        await kube.informer("services", NS).wait_synced(0.1)  # never started
