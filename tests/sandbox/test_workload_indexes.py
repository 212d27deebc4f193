"""The workload's controllers find their objects through store indexes, not namespace scans.

A pod event must cost the Services that select the pod, not every Service of the namespace (the
scale bench runs thousands in one namespace), and the indexes must stay exact as labels change.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.sandbox.apiserver import ApiServer
from controller.sandbox.endpointslices import SERVICE_NAME_LABEL
from controller.sandbox.store import Store
from controller.sandbox.workload import Workload
from tests.sandbox.conftest import deployment, service, wait_until

Obj = dict[str, Any]


def endpoint_pods(api: ApiServer, svc: str) -> set[str]:
    slices = api.list("EndpointSlice", label_selector=f"{SERVICE_NAME_LABEL}={svc}")
    return {e["targetRef"]["name"] for s in slices for e in s["endpoints"] or []}


def ready_endpoints(api: ApiServer, svc: str) -> int:
    slices = api.list("EndpointSlice", label_selector=f"{SERVICE_NAME_LABEL}={svc}")
    return sum(bool(e["conditions"]["ready"]) for s in slices for e in s["endpoints"] or [])


def ready_count(api: ApiServer, app: str) -> int:
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
        for p in api.list("Pod", label_selector=f"app={app}")
        if p.get("status", {}).get("conditions")
    )


async def test_a_pod_event_syncs_only_the_services_selecting_it(
    api_server: ApiServer, workload: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(30):
        api_server.create(service(f"svc-{i}", selector={"app": f"app-{i}"}))
        api_server.create(deployment(f"app-{i}", replicas=1, app=f"app-{i}"))
    await wait_until(
        api_server.store,
        lambda: all(ready_endpoints(api_server, f"svc-{i}") == 1 for i in range(30)),
    )
    synced: list[tuple[str, str]] = []
    original = workload.endpoints.sync

    def spy(namespace: str, name: str) -> None:
        synced.append((namespace, name))
        original(namespace, name)

    monkeypatch.setattr(workload.endpoints, "sync", spy)
    api_server.patch("Deployment", "app-7", {"spec": {"replicas": 3}}, subresource="scale")
    await wait_until(api_server.store, lambda: len(endpoint_pods(api_server, "svc-7")) == 3)
    await wait_until(api_server.store, lambda: ready_count(api_server, "app-7") == 3)
    assert synced, "the scale-up synced no slice at all"
    assert set(synced) == {("default", "svc-7")}


async def test_a_pod_relabelled_out_of_a_selector_leaves_the_old_slice(
    api_server: ApiServer, workload: Workload
) -> None:
    api_server.create(service("web", selector={"app": "web"}))
    api_server.create(service("other", selector={"app": "other"}))
    api_server.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "solo", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
        }
    )
    await wait_until(api_server.store, lambda: endpoint_pods(api_server, "web") == {"solo"})
    # the watch event carries only the new labels: the old Service must still hear of it
    api_server.patch("Pod", "solo", {"metadata": {"labels": {"app": "other"}}})
    await wait_until(api_server.store, lambda: endpoint_pods(api_server, "other") == {"solo"})
    await wait_until(api_server.store, lambda: endpoint_pods(api_server, "web") == set())


async def test_deleting_a_deployment_uses_the_owner_index(
    api_server: ApiServer, workload: Workload
) -> None:
    # "web" is a prefix of "web-v2": the owner index must not hand web's pods to web-v2
    api_server.create(deployment("web", replicas=2))
    api_server.create(deployment("web-v2", replicas=1, version="v2"))
    await wait_until(api_server.store, lambda: len(api_server.list("Pod")) == 3)
    api_server.delete("Deployment", "web")
    await wait_until(
        api_server.store,
        lambda: [p["metadata"]["labels"]["version"] for p in api_server.list("Pod")] == ["v2"],
    )


def _pod(name: str, labels: dict[str, str], ns: str = "default") -> Obj:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}}


def _by_label(obj: Obj) -> list[tuple[str, str, str]]:
    ns = obj["metadata"]["namespace"]
    return [(ns, k, v) for k, v in obj["metadata"].get("labels", {}).items()]


def test_store_index_follows_puts_relabels_and_removes() -> None:
    store = Store()
    key = ("", "pods")
    store.put(key, _pod("b", {"app": "x"}))
    store.add_index(key, "labels", _by_label)  # built from what is already stored
    store.put(key, _pod("a", {"app": "x"}))
    store.put(key, _pod("c", {"app": "x"}, ns="other"))
    names = lambda v: [o["metadata"]["name"] for o in store.by_index(key, "labels", v)]  # noqa: E731
    assert names(("default", "app", "x")) == ["a", "b"]
    store.put(key, _pod("b", {"app": "y"}))
    assert names(("default", "app", "x")) == ["a"]
    assert names(("default", "app", "y")) == ["b"]
    store.remove(key, "default", "a")
    assert names(("default", "app", "x")) == []
    assert names(("other", "app", "x")) == ["c"]
    # an emptied value leaves no entry behind (the table does not grow with churn)
    assert ("default", "app", "x") not in store._indexes[key]["labels"][1]
