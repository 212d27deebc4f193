"""Workload simulator: Deployments own pods, pods get Ready, EndpointSlices follow."""

from __future__ import annotations

import re
from typing import Any

from controller.sandbox.apiserver import ApiServer
from controller.sandbox.endpointslices import SERVICE_NAME_LABEL
from controller.sandbox.workload import NullPodRuntime, Workload, template_hash
from tests.sandbox.conftest import deployment, service, wait_until

Obj = dict[str, Any]


def pods(api: ApiServer, selector: str = "app=web") -> list[Obj]:
    return api.list("Pod", label_selector=selector)


def ready(pod: Obj) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def the_slice(api: ApiServer, svc: str = "web") -> Obj:
    slices = api.list("EndpointSlice", label_selector=f"{SERVICE_NAME_LABEL}={svc}")
    assert len(slices) == 1
    return slices[0]


def endpoints_by_pod(api: ApiServer, svc: str = "web") -> dict[str, Obj]:
    return {e["targetRef"]["name"]: e for e in the_slice(api, svc)["endpoints"] or []}


async def test_scale_1_to_4_gives_4_ready_pods_and_matching_endpointslice(
    api_server: ApiServer, workload: Workload, runtime: NullPodRuntime
) -> None:
    api_server.create(service())
    api_server.create(deployment("web", replicas=1))
    await wait_until(api_server.store, lambda: len([p for p in pods(api_server) if ready(p)]) == 1)

    api_server.patch("Deployment", "web", {"spec": {"replicas": 4}}, subresource="scale")
    await wait_until(api_server.store, lambda: sum(ready(p) for p in pods(api_server)) == 4)
    await wait_until(
        api_server.store,
        lambda: api_server.get("Deployment", "web")["status"].get("readyReplicas") == 4,
    )

    all_pods = pods(api_server)
    assert len(all_pods) == 4
    dep = api_server.get("Deployment", "web")
    pod_hash = template_hash(dep["spec"]["template"])
    for pod in all_pods:
        meta = pod["metadata"]
        assert re.fullmatch(rf"web-{pod_hash}-[bcdfghjklmnpqrstvwxz2456789]{{5}}", meta["name"])
        assert meta["labels"] == {"app": "web", "version": "v1", "pod-template-hash": pod_hash}
        (owner,) = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == (
            "ReplicaSet",
            f"web-{pod_hash}",
            True,
        )
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"] in runtime.running.values()
    status = dep["status"]
    assert status["observedGeneration"] == dep["metadata"]["generation"] == 2
    assert (
        status["replicas"],
        status["updatedReplicas"],
        status["readyReplicas"],
        status["availableReplicas"],
    ) == (
        4,
        4,
        4,
        4,
    )
    assert "unavailableReplicas" not in status

    await wait_until(api_server.store, lambda: len(endpoints_by_pod(api_server)) == 4)
    eps = endpoints_by_pod(api_server)
    assert set(eps) == {p["metadata"]["name"] for p in all_pods}
    for pod in all_pods:
        ep = eps[pod["metadata"]["name"]]
        assert ep["addresses"] == [pod["status"]["podIP"]]
        assert ep["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert ep["targetRef"]["uid"] == pod["metadata"]["uid"]
    slice_ = the_slice(api_server)
    assert slice_["addressType"] == "IPv4"
    assert slice_["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert slice_["metadata"]["ownerReferences"][0]["kind"] == "Service"


async def test_new_pods_are_not_ready_until_the_delay(
    api_server: ApiServer, runtime: NullPodRuntime
) -> None:
    sim = Workload(api_server.registry, runtime, ready_delay=0.3, termination_grace=0.05)
    await sim.start()
    try:
        api_server.create(service())
        api_server.create(deployment("web", replicas=2))
        await wait_until(
            api_server.store,
            lambda: (
                all(p["status"].get("podIP") for p in pods(api_server))
                and len(pods(api_server)) == 2
            ),
        )
        assert not any(ready(p) for p in pods(api_server))
        await wait_until(api_server.store, lambda: len(endpoints_by_pod(api_server)) == 2)
        assert all(not e["conditions"]["ready"] for e in endpoints_by_pod(api_server).values())
        assert "readyReplicas" not in api_server.get("Deployment", "web")["status"]
        await wait_until(
            api_server.store, lambda: sum(ready(p) for p in pods(api_server)) == 2, limit=2
        )
    finally:
        await sim.stop()


async def test_scale_down_marks_terminating_first_then_removes(
    api_server: ApiServer, runtime: NullPodRuntime
) -> None:
    sim = Workload(api_server.registry, runtime, ready_delay=0.01, termination_grace=0.3)
    await sim.start()
    try:
        api_server.create(service())
        api_server.create(deployment("web", replicas=3))
        await wait_until(api_server.store, lambda: sum(ready(p) for p in pods(api_server)) == 3)
        api_server.patch("Deployment", "web", {"spec": {"replicas": 1}})

        def terminating() -> list[Obj]:
            return [p for p in pods(api_server) if "deletionTimestamp" in p["metadata"]]

        await wait_until(
            api_server.store,
            lambda: len(terminating()) == 2 and not any(ready(p) for p in terminating()),
        )
        going = {p["metadata"]["name"] for p in terminating()}
        # No preStop hook: SIGTERM comes at once and the process exits while the object stays
        # Terminating for the rest of its shutdown (the preStop cases: test_termination.py).
        await wait_until(
            api_server.store, lambda: not any(("default", n) in runtime.running for n in going)
        )
        assert {p["metadata"]["name"] for p in terminating()} == going
        await wait_until(
            api_server.store,
            lambda: all(
                endpoints_by_pod(api_server).get(n, {}).get("conditions")
                == {"ready": False, "serving": False, "terminating": True}
                for n in going
            ),
        )
        assert api_server.get("Deployment", "web")["status"]["replicas"] == 1
        await wait_until(api_server.store, lambda: len(pods(api_server)) == 1, limit=2)
        assert not going & {n for (_, n) in runtime.running}
        await wait_until(
            api_server.store,
            lambda: set(endpoints_by_pod(api_server)) == {pods(api_server)[0]["metadata"]["name"]},
        )
    finally:
        await sim.stop()


async def test_service_selector_patch_moves_endpoints_at_once(
    api_server: ApiServer, workload: Workload
) -> None:
    api_server.create(deployment("web", replicas=2, version="v1"))
    api_server.create(deployment("web-v2", replicas=1, version="v2"))
    api_server.create(service(selector={"app": "web"}))
    await wait_until(api_server.store, lambda: sum(ready(p) for p in pods(api_server)) == 3)
    await wait_until(api_server.store, lambda: len(endpoints_by_pod(api_server)) == 3)

    api_server.patch("Service", "web", {"spec": {"selector": {"app": "web", "version": "v2"}}})
    rv_after_patch = api_server.store.resource_version
    await wait_until(api_server.store, lambda: len(endpoints_by_pod(api_server)) == 1, limit=0.5)
    (name,) = endpoints_by_pod(api_server)
    assert name.startswith("web-v2-")
    # moved by the Service change alone: no pod was written since the patch
    assert all(int(p["metadata"]["resourceVersion"]) <= rv_after_patch for p in pods(api_server))


async def test_deleting_a_deployment_removes_its_pods(
    api_server: ApiServer, workload: Workload, runtime: NullPodRuntime
) -> None:
    api_server.create(deployment("web", replicas=2))
    await wait_until(api_server.store, lambda: sum(ready(p) for p in pods(api_server)) == 2)
    api_server.delete("Deployment", "web")
    await wait_until(api_server.store, lambda: not pods(api_server), limit=2)
    await wait_until(api_server.store, lambda: not runtime.running)


async def test_template_change_rolls_pods_to_new_hash(
    api_server: ApiServer, workload: Workload
) -> None:
    api_server.create(deployment("web", replicas=2))
    await wait_until(api_server.store, lambda: sum(ready(p) for p in pods(api_server)) == 2)
    old_hash = pods(api_server)[0]["metadata"]["labels"]["pod-template-hash"]
    api_server.patch(
        "Deployment",
        "web",
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "proxy", "image": "zai-proxy:v1.1"}]}}
            }
        },
        patch_type="strategic",
    )

    def rolled() -> bool:
        current = pods(api_server)
        return len(current) == 2 and all(
            p["metadata"]["labels"]["pod-template-hash"] != old_hash and ready(p) for p in current
        )

    await wait_until(api_server.store, rolled, limit=3)
    image = pods(api_server)[0]["spec"]["containers"][0]["image"]
    assert image == "zai-proxy:v1.1"
    status = api_server.get("Deployment", "web")["status"]
    await wait_until(
        api_server.store,
        lambda: api_server.get("Deployment", "web")["status"].get("updatedReplicas") == 2,
    )
    assert status["observedGeneration"] == 2


async def test_standalone_pod_is_scheduled_started_and_force_delete_stops_it(
    api_server: ApiServer, workload: Workload, runtime: NullPodRuntime
) -> None:
    api_server.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stray", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
        }
    )
    await wait_until(api_server.store, lambda: ready(api_server.get("Pod", "stray")))
    assert api_server.get("Pod", "stray")["spec"]["nodeName"] == "sandbox-node"
    assert ("default", "stray") in runtime.running
    api_server.delete("Pod", "stray", grace_period=0)
    await wait_until(api_server.store, lambda: ("default", "stray") not in runtime.running)


async def test_workload_stop_stops_every_started_pod(
    api_server: ApiServer, runtime: NullPodRuntime
) -> None:
    sim = Workload(api_server.registry, runtime, ready_delay=0.01, termination_grace=0.01)
    await sim.start()
    api_server.create(deployment("web", replicas=3))
    await wait_until(api_server.store, lambda: len(runtime.running) == 3)
    await sim.stop()
    assert runtime.running == {}
