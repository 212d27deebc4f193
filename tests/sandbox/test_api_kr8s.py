"""Contract tests: the sandbox driven by kr8s async exactly as the controller drives a cluster."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import kr8s
import pytest
from kr8s.asyncio.objects import ConfigMap, Deployment, Event, Pod, Service, new_class

from controller.sandbox.apiaccess import rule
from controller.sandbox.apiserver import ApiServer
from tests.sandbox.conftest import deployment, service

# Explicit classes: no reliance on kr8s's discovery-driven string kind lookup.
Lease = new_class("Lease", version="coordination.k8s.io/v1", namespaced=True, plural="leases")
EndpointSlice = new_class(
    "EndpointSlice", version="discovery.k8s.io/v1", namespaced=True, plural="endpointslices"
)
EventV1 = new_class("Event", version="events.k8s.io/v1", namespaced=True, plural="events")


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
    }


async def test_get_and_list_with_equality_and_set_based_selectors(kube: Any) -> None:
    for name, labels in [
        ("a", {"app": "web", "version": "v1"}),
        ("b", {"app": "web", "version": "v2"}),
        ("c", {"app": "db"}),
    ]:
        await Pod(_pod(name, labels), api=kube).create()

    async def names(**kw: Any) -> list[str]:
        return sorted([p.name async for p in kube.get(Pod, namespace="default", **kw)])

    assert await names(label_selector={"app": "web"}) == ["a", "b"]
    assert await names(label_selector="app==web,version!=v1") == ["b"]
    assert await names(label_selector="version in (v1,v3)") == ["a"]
    assert await names(label_selector="app notin (web)") == ["c"]
    assert await names(label_selector="!version") == ["c"]
    assert await names(label_selector="version") == ["a", "b"]
    assert await names(field_selector="metadata.name=b") == ["b"]
    pod = await Pod.get("c", namespace="default", api=kube)
    assert pod.labels == {"app": "db"}


async def test_scale_subresource_patch_updates_replicas_and_generation(kube: Any) -> None:
    dep = Deployment(deployment("web", replicas=1), api=kube)
    await dep.create()
    assert dep.metadata.generation == 1
    await dep.patch({"spec": {"replicas": 4}}, subresource="scale")
    assert dep.raw["spec"]["replicas"] == 4
    assert dep.raw["status"]["selector"] == "app=web,version=v1"
    fresh = await Deployment.get("web", namespace="default", api=kube)
    assert fresh.spec.replicas == 4
    assert fresh.metadata.generation == 2


async def test_service_merge_patch_and_json_patch_remove(kube: Any) -> None:
    svc = Service(service(selector={"app": "web"}), api=kube)
    await svc.create()
    await svc.patch({"spec": {"selector": {"app": "web", "version": "v2"}}})
    assert svc.spec.selector == {"app": "web", "version": "v2"}
    await svc.patch([{"op": "remove", "path": "/spec/selector/version"}], type="json")
    assert svc.spec.selector == {"app": "web"}
    await svc.refresh()
    assert svc.spec.selector == {"app": "web"}


async def test_stale_resource_version_is_409_conflict(kube: Any) -> None:
    svc = Service(service(), api=kube)
    await svc.create()
    stale = svc.metadata.resourceVersion
    await svc.patch({"metadata": {"annotations": {"step": "1"}}})
    with pytest.raises(kr8s.ServerError) as err:
        await svc.patch({"metadata": {"resourceVersion": stale, "annotations": {"step": "2"}}})
    assert err.value.response is not None
    assert err.value.response.status_code == 409
    assert err.value.status["reason"] == "Conflict"
    await svc.refresh()
    assert svc.metadata.annotations == {"step": "1"}
    # with the current version the same precondition passes
    await svc.patch(
        {
            "metadata": {
                "resourceVersion": svc.metadata.resourceVersion,
                "annotations": {"step": "2"},
            }
        }
    )
    assert svc.metadata.annotations == {"step": "2"}


async def _list_then_watch(
    kube: Any, seen: list[str], relists: list[int], stop: asyncio.Event
) -> None:
    """The informer pattern: list, watch from the list's version, relist on 410."""
    while not stop.is_set():
        async with kube.async_get_kind(ConfigMap, namespace="default") as (_, resp):
            listing = resp.json()
        relists.append(int(listing["metadata"]["resourceVersion"]))
        seen.extend(
            i["metadata"]["name"] for i in listing["items"] if i["metadata"]["name"] not in seen
        )
        params = {"resourceVersion": listing["metadata"]["resourceVersion"], "timeoutSeconds": 5}
        async with kube.async_get_kind(
            ConfigMap, namespace="default", params=params, watch=True, timeout=None
        ) as (_, resp):
            async for line in resp.aiter_lines():
                event = json.loads(line)
                if event["type"] == "ERROR" and event["object"].get("code") == 410:
                    break
                if event["object"]["metadata"]["name"] not in seen:
                    seen.append(event["object"]["metadata"]["name"])


async def test_watch_survives_forced_410_by_relisting(api_server: ApiServer, kube: Any) -> None:
    await ConfigMap({"metadata": {"name": "one", "namespace": "default"}}, api=kube).create()
    seen: list[str] = []
    relists: list[int] = []
    stop = asyncio.Event()
    task = asyncio.create_task(_list_then_watch(kube, seen, relists, stop))
    try:
        await _until(lambda: seen == ["one"])
        await ConfigMap({"metadata": {"name": "two", "namespace": "default"}}, api=kube).create()
        await _until(lambda: "two" in seen)
        # compaction, a cut stream and a write while disconnected: only a relist can see "three"
        api_server.compact()
        api_server.cut_watches()
        await ConfigMap({"metadata": {"name": "three", "namespace": "default"}}, api=kube).create()
        await _until(lambda: "three" in seen)
        assert len(relists) >= 2
    finally:
        stop.set()
        # Cut until the loop sees `stop`: a single cut can land between its list and its next
        # watch (a busy machine makes that likely), and that watch would run its full 5 s.
        async with asyncio.timeout(5):
            while not task.done():
                api_server.cut_watches()
                await asyncio.wait([task], timeout=0.05)
        await task


async def test_kr8s_watch_gets_410_status_event(api_server: ApiServer, kube: Any) -> None:
    """What kr8s's own watch() sees: a 200 stream with an ERROR Status event, code 410."""
    first = ConfigMap({"metadata": {"name": "x", "namespace": "default"}}, api=kube)
    await first.create()
    await ConfigMap({"metadata": {"name": "y", "namespace": "default"}}, api=kube).create()
    api_server.compact()
    async with kube.async_get_kind(
        ConfigMap,
        namespace="default",
        params={"resourceVersion": first.metadata.resourceVersion},
        watch=True,
        timeout=5,
    ) as (_, resp):
        assert resp.status_code == 200
        lines = [json.loads(line) async for line in resp.aiter_lines()]
    assert lines[0]["type"] == "ERROR"
    assert lines[0]["object"]["kind"] == "Status"
    assert lines[0]["object"]["code"] == 410
    assert lines[0]["object"]["reason"] == "Expired"


async def test_token_lacking_a_verb_gets_403(api_server: ApiServer, tmp_path: Path) -> None:
    api_server.create(service())
    api_server.add_token(
        "reader", "system:serviceaccount:default:ptc", [rule("", "services", ["get", "list"])]
    )
    kubeconfig = api_server.write_kubeconfig(tmp_path / "reader", token="reader")
    kube = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
    try:
        svc = await Service.get("web", namespace="default", api=kube)
        with pytest.raises(kr8s.ServerError) as err:
            await svc.patch({"spec": {"selector": {"app": "other"}}})
        assert err.value.response is not None
        assert err.value.response.status_code == 403
        assert err.value.status["message"] == (
            'services "web" is forbidden: User "system:serviceaccount:default:ptc" cannot patch '
            'resource "services" in API group "" in the namespace "default"'
        )
        assert api_server.count(verb="patch", user="system:serviceaccount:default:ptc") >= 1
        assert api_server.get("Service", "web")["spec"]["selector"] == {"app": "web"}
    finally:
        if kube._session is not None:
            await kube._session.aclose()


async def test_events_create_in_both_apis(api_server: ApiServer, kube: Any) -> None:
    core = Event(
        {
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
            "reason": "StepAdvanced",
            "message": "weight 25%",
            "type": "Normal",
            "source": {"component": "ptc"},
        },
        api=kube,
    )
    await core.create()
    new_style = EventV1(
        {
            "metadata": {"name": "web.2", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "ptc.io/controller",
            "reportingInstance": "ptc-0",
            "action": "Shift",
            "reason": "StepAdvanced",
            "type": "Normal",
            "regarding": {"kind": "Service", "name": "web", "namespace": "default"},
        },
        api=kube,
    )
    await new_style.create()
    reasons = [
        e.raw["reason"]
        async for e in kube.get(Event, namespace="default", field_selector="reason=StepAdvanced")
    ]
    assert reasons == ["StepAdvanced"]
    incomplete = EventV1({"metadata": {"name": "bad", "namespace": "default"}}, api=kube)
    with pytest.raises(kr8s.ServerError) as err:
        await incomplete.create()
    assert err.value.status["code"] == 422


async def test_lease_create_and_update_with_optimistic_concurrency(kube: Any) -> None:
    lease = Lease(
        {
            "metadata": {"name": "ptc-leader", "namespace": "default"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        },
        api=kube,
    )
    await lease.create()
    first_rv = lease.metadata.resourceVersion
    await lease.patch(
        {
            "metadata": {"resourceVersion": first_rv},
            "spec": {"holderIdentity": "a", "renewTime": "2026-01-01T00:00:01.000000Z"},
        }
    )
    # a second candidate still holding the first version loses
    with pytest.raises(kr8s.ServerError) as err:
        await lease.patch(
            {"metadata": {"resourceVersion": first_rv}, "spec": {"holderIdentity": "b"}}
        )
    assert err.value.status["code"] == 409
    await lease.refresh()
    assert lease.spec.holderIdentity == "a"
    assert "generation" not in lease.metadata


async def test_endpointslice_list(api_server: ApiServer, kube: Any) -> None:
    api_server.create(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-abcde",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.64.0.1"], "conditions": {"ready": True}}],
        }
    )
    slices = [
        s
        async for s in kube.get(
            EndpointSlice, namespace="default", label_selector={"kubernetes.io/service-name": "web"}
        )
    ]
    assert [s.name for s in slices] == ["web-abcde"]
    assert slices[0].raw["endpoints"][0]["addresses"] == ["127.64.0.1"]


async def _until(condition: Any, limit: float = 3.0) -> None:
    """Bounded wait on a condition fed by another task (the kr8s watch loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
