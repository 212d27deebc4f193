"""Raw HTTP tests of the sandbox API: Status shapes, concurrency, generation, patches, watch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controller.sandbox.apiserver import ApiServer
from tests.sandbox.conftest import deployment, service

Obj = dict[str, Any]
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
SERVICES = "/api/v1/namespaces/default/services"
PODS = "/api/v1/namespaces/default/pods"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONP = {"Content-Type": "application/json-patch+json"}
SMP = {"Content-Type": "application/strategic-merge-patch+json"}


@pytest.fixture
async def http(api_server: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=api_server.url, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Obj]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    async with http.request(method, path, data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def assert_status(body: Obj, code: int, reason: str) -> None:
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    assert body["message"]


# --- discovery -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/version", "/version/", "/api", "/api/", "/apis", "/apis/"])
async def test_discovery_answers_with_and_without_trailing_slash(
    http: aiohttp.ClientSession, path: str
) -> None:
    status, body = await call(http, "GET", path)
    assert status == 200
    assert body.get("kind") in (None, "APIVersions", "APIGroupList")


async def test_resource_lists_describe_the_served_resources(http: aiohttp.ClientSession) -> None:
    _, apps = await call(http, "GET", "/apis/apps/v1/")
    by_name = {r["name"]: r for r in apps["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"]
    assert by_name["deployments"]["namespaced"] is True
    assert "watch" in by_name["deployments"]["verbs"]
    assert by_name["deployments/scale"]["kind"] == "Scale"
    assert by_name["deployments/scale"]["group"] == "autoscaling"
    _, core = await call(http, "GET", "/api/v1")
    assert {"pods", "pods/status", "services", "configmaps", "events"} <= {
        r["name"] for r in core["resources"]
    }
    _, groups = await call(http, "GET", "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"apps", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io"} <= names
    _, version = await call(http, "GET", "/version")
    assert (version["major"], int(version["minor"])) == ("1", 34)


# --- Status objects ----------------------------------------------------------------------------


async def test_not_found_status(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", f"{DEPLOYMENTS}/nope")
    assert status == 404
    assert_status(body, 404, "NotFound")
    assert body["message"] == 'deployments.apps "nope" not found'
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    status, body = await call(http, "GET", "/apis/apps/v1/namespaces/default/replicasets")
    assert (status, body["reason"]) == (404, "NotFound")


async def test_already_exists_is_409(http: aiohttp.ClientSession) -> None:
    assert (await call(http, "POST", SERVICES, service()))[0] == 201
    status, body = await call(http, "POST", SERVICES, service())
    assert status == 409
    assert_status(body, 409, "AlreadyExists")
    assert body["message"] == 'services "web" already exists'


async def test_put_with_stale_resource_version_is_409_conflict(http: aiohttp.ClientSession) -> None:
    _, created = await call(http, "POST", SERVICES, service())
    _, patched = await call(
        http, "PATCH", f"{SERVICES}/web", {"metadata": {"labels": {"a": "b"}}}, MERGE
    )
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    status, body = await call(http, "PUT", f"{SERVICES}/web", created)
    assert status == 409
    assert_status(body, 409, "Conflict")
    assert "the object has been modified" in body["message"]
    # empty resourceVersion means an unconditional update
    created["metadata"].pop("resourceVersion")
    assert (await call(http, "PUT", f"{SERVICES}/web", created))[0] == 200


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["spec"].update(replicas=-1), "spec.replicas"),
        (lambda d: d["metadata"].pop("name"), "metadata.name"),
        (
            lambda d: d["spec"]["template"]["metadata"]["labels"].update(version="v9"),
            "spec.template.metadata.labels",
        ),
        (lambda d: d["spec"].pop("selector"), "spec.selector"),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("image"),
            "spec.template.spec.containers[0].image",
        ),
        (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name"),
    ],
)
async def test_invalid_deployments_are_422(
    http: aiohttp.ClientSession, mutate: Any, field: str
) -> None:
    obj = deployment("web")
    mutate(obj)
    status, body = await call(http, "POST", DEPLOYMENTS, obj)
    assert status == 422
    assert_status(body, 422, "Invalid")
    assert body["details"]["kind"] == "Deployment"
    assert field in [c["field"] for c in body["details"]["causes"]]
    assert body["message"].startswith("Deployment.apps ")


async def test_negative_replicas_message_matches_the_real_server(
    http: aiohttp.ClientSession,
) -> None:
    await call(http, "POST", DEPLOYMENTS, deployment("web"))
    status, body = await call(
        http, "PATCH", f"{DEPLOYMENTS}/web/scale", {"spec": {"replicas": -1}}, MERGE
    )
    assert status == 422
    assert (
        body["message"] == 'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0"
    )
    status, body = await call(
        http, "PATCH", f"{DEPLOYMENTS}/web", {"spec": {"replicas": -1}}, MERGE
    )
    assert status == 422
    assert (
        body["message"] == 'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0"
    )


async def test_annotations_over_256_kib_are_refused_like_the_real_server(
    http: aiohttp.ClientSession,
) -> None:
    await call(http, "POST", SERVICES, service("web"))
    # Keys and values count, in bytes: 262144 exactly is allowed, one more byte is not.
    fits = {"metadata": {"annotations": {"a": "x" * (256 * 1024 - 1)}}}
    status, _ = await call(http, "PATCH", f"{SERVICES}/web", fits, MERGE)
    assert status == 200
    over = {"metadata": {"annotations": {"a": "x" * (256 * 1024 - 1), "b": ""}}}
    status, body = await call(http, "PATCH", f"{SERVICES}/web", over, MERGE)
    assert status == 422
    assert body["message"] == (
        'Service "web" is invalid: metadata.annotations: Too long: must have at most 262144 bytes'
    )
    assert body["details"]["causes"][0]["reason"] == "FieldValueTooLong"


async def test_deployment_selector_is_immutable(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", DEPLOYMENTS, deployment("web"))
    patch = {"spec": {"selector": {"matchLabels": {"version": None}}}}
    status, body = await call(http, "PATCH", f"{DEPLOYMENTS}/web", patch, MERGE)
    assert status == 422
    assert any(
        c["field"] == "spec.selector" and "field is immutable" in c["message"]
        for c in body["details"]["causes"]
    )


async def test_failed_json_patch_test_op_is_422_and_changes_nothing(
    http: aiohttp.ClientSession,
) -> None:
    _, created = await call(http, "POST", SERVICES, service())
    ops = [
        {"op": "replace", "path": "/spec/selector/app", "value": "other"},
        {"op": "test", "path": "/metadata/annotations", "value": {"x": "y"}},
    ]
    status, body = await call(http, "PATCH", f"{SERVICES}/web", ops, JSONP)
    assert status == 422
    assert_status(body, 422, "Invalid")
    _, now = await call(http, "GET", f"{SERVICES}/web")
    assert now == created


async def test_malformed_patches(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", SERVICES, service())
    status, body = await call(http, "PATCH", f"{SERVICES}/web", b"{not json", MERGE)
    assert (status, body["reason"]) == (400, "BadRequest")
    status, body = await call(http, "PATCH", f"{SERVICES}/web", {"op": "add"}, JSONP)
    assert (status, body["reason"]) == (400, "BadRequest")
    status, body = await call(
        http, "PATCH", f"{SERVICES}/web", [{"op": "remove", "path": "/spec/nope"}], JSONP
    )
    assert (status, body["reason"]) == (422, "Invalid")
    status, body = await call(
        http, "PATCH", f"{SERVICES}/web", {"spec": {"ports": [{"port": 0}]}}, MERGE
    )
    assert (status, body["reason"]) == (422, "Invalid")


async def test_unknown_patch_content_type_is_415(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", SERVICES, service())
    status, body = await call(
        http, "PATCH", f"{SERVICES}/web", {}, {"Content-Type": "application/json"}
    )
    assert status == 415
    assert_status(body, 415, "UnsupportedMediaType")
    assert "application/strategic-merge-patch+json" in body["message"]


async def test_unsupported_verbs_are_405(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "PUT", SERVICES, service())
    assert status == 405
    assert_status(body, 405, "MethodNotAllowed")
    status, _ = await call(http, "DELETE", f"{DEPLOYMENTS}/web/scale")
    assert status == 405


async def test_bad_label_selector_is_400(http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", f"{PODS}?labelSelector=app%20in%20(a")
    assert (status, body["reason"]) == (400, "BadRequest")
    status, body = await call(http, "GET", f"{PODS}?fieldSelector=spec.bogus%3Dx")
    assert (status, body["message"]) == (400, "field label not supported: spec.bogus")


# --- resourceVersion and generation ------------------------------------------------------------


async def test_noop_patch_and_put_change_nothing(http: aiohttp.ClientSession) -> None:
    _, created = await call(http, "POST", DEPLOYMENTS, deployment("web"))
    for body, headers in [
        ({"spec": {"replicas": 1}}, MERGE),
        ({"metadata": {"labels": {"app": "web"}}}, SMP),
        ([{"op": "test", "path": "/spec/replicas", "value": 1}], JSONP),
    ]:
        status, after = await call(http, "PATCH", f"{DEPLOYMENTS}/web", body, headers)
        assert status == 200
        assert after == created
    status, after = await call(http, "PUT", f"{DEPLOYMENTS}/web", created)
    assert (status, after) == (200, created)


async def test_empty_metadata_maps_and_lists_are_not_stored_like_the_real_server(
    http: aiohttp.ClientSession,
) -> None:
    # Go's omitempty: a real API server returns no `annotations` key once the last one is gone
    # (and none for an empty map or list sent on create), so readers must not expect `{}`.
    body = deployment("web")
    body["metadata"].update(annotations={}, finalizers=[], ownerReferences=[])
    _, created = await call(http, "POST", DEPLOYMENTS, body)
    for key in ("annotations", "finalizers", "ownerReferences"):
        assert key not in created["metadata"], created["metadata"]
    patch = {"metadata": {"annotations": {"ptc.dev/claim": "ctl-a/1"}}}
    status, claimed = await call(http, "PATCH", f"{DEPLOYMENTS}/web", patch, MERGE)
    assert status == 200 and claimed["metadata"]["annotations"] == {"ptc.dev/claim": "ctl-a/1"}
    gone = {"metadata": {"annotations": {"ptc.dev/claim": None}}}
    status, after = await call(http, "PATCH", f"{DEPLOYMENTS}/web", gone, MERGE)
    assert status == 200 and "annotations" not in after["metadata"], after["metadata"]
    assert after["metadata"]["resourceVersion"] != claimed["metadata"]["resourceVersion"]
    labelled = service("api")
    labelled["metadata"]["labels"] = {"team": "x"}
    await call(http, "POST", SERVICES, labelled)
    status, after = await call(
        http,
        "PATCH",
        f"{SERVICES}/api",
        [{"op": "replace", "path": "/metadata/labels", "value": {}}],
        JSONP,
    )
    assert status == 200 and "labels" not in after["metadata"], after["metadata"]


async def test_deployment_generation_rules(http: aiohttp.ClientSession) -> None:
    _, dep = await call(http, "POST", DEPLOYMENTS, deployment("web"))
    assert dep["metadata"]["generation"] == 1

    async def gen_after(body: Any, path: str = f"{DEPLOYMENTS}/web") -> int:
        status, obj = await call(http, "PATCH", path, body, MERGE)
        assert status == 200, obj
        _, obj = await call(http, "GET", f"{DEPLOYMENTS}/web")
        return int(obj["metadata"]["generation"])

    assert await gen_after({"metadata": {"labels": {"team": "x"}}}) == 1
    assert await gen_after({"status": {"replicas": 5}}, f"{DEPLOYMENTS}/web/status") == 1
    assert await gen_after({"spec": {"replicas": 3}}) == 2
    assert await gen_after({"metadata": {"annotations": {"ptc/state": "{}"}}}) == 3
    assert await gen_after({"spec": {"replicas": 2}}, f"{DEPLOYMENTS}/web/scale") == 4
    # the main resource cannot write status, the status subresource cannot write spec
    await call(http, "PATCH", f"{DEPLOYMENTS}/web", {"status": {"replicas": 9}}, MERGE)
    await call(
        http,
        "PATCH",
        f"{DEPLOYMENTS}/web/status",
        {"spec": {"replicas": 9}, "status": {"replicas": 1}},
        MERGE,
    )
    _, obj = await call(http, "GET", f"{DEPLOYMENTS}/web")
    assert (obj["spec"]["replicas"], obj["status"]["replicas"]) == (2, 1)


async def test_pod_generation_and_graceful_delete(
    http: aiohttp.ClientSession, api_server: ApiServer
) -> None:
    pod = {
        "metadata": {"name": "p", "labels": {"a": "b"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i:1"}]},
    }
    _, created = await call(http, "POST", PODS, pod)
    assert created["metadata"]["generation"] == 1
    assert created["status"]["phase"] == "Pending"
    _, relabelled = await call(
        http, "PATCH", f"{PODS}/p", {"metadata": {"labels": {"a": "c"}}}, MERGE
    )
    assert relabelled["metadata"]["generation"] == 1
    _, reimaged = await call(
        http, "PATCH", f"{PODS}/p", {"spec": {"containers": [{"name": "c", "image": "i:2"}]}}, SMP
    )
    assert reimaged["metadata"]["generation"] == 2
    status, body = await call(http, "PATCH", f"{PODS}/p", {"spec": {"nodeName": "n2"}}, MERGE)
    assert (status, body["details"]["causes"][0]["reason"]) == (422, "FieldValueForbidden")
    status, deleted = await call(http, "DELETE", f"{PODS}/p")
    assert status == 200
    assert deleted["kind"] == "Pod"
    assert deleted["metadata"]["deletionGracePeriodSeconds"] == 30
    assert deleted["metadata"]["generation"] == 3
    assert api_server.get("Pod", "p")["metadata"]["deletionTimestamp"]
    status, _ = await call(http, "DELETE", f"{PODS}/p?gracePeriodSeconds=0")
    assert status == 200
    assert (await call(http, "GET", f"{PODS}/p"))[0] == 404


async def test_delete_returns_status_for_deployments_and_object_for_services(
    http: aiohttp.ClientSession,
) -> None:
    await call(http, "POST", DEPLOYMENTS, deployment("web"))
    await call(http, "POST", SERVICES, service())
    status, body = await call(http, "DELETE", f"{DEPLOYMENTS}/web")
    assert status == 200
    assert (body["kind"], body["status"], body["details"]["kind"]) == (
        "Status",
        "Success",
        "deployments",
    )
    status, body = await call(http, "DELETE", f"{SERVICES}/web", {})
    assert (status, body["kind"]) == (200, "Service")


async def test_put_creates_services_and_leases_but_not_deployments(
    http: aiohttp.ClientSession,
) -> None:
    status, _ = await call(http, "PUT", f"{SERVICES}/web", service())
    assert status == 201
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l"},
        "spec": {},
    }
    status, _ = await call(
        http, "PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/l", lease
    )
    assert status == 201
    status, _ = await call(http, "PUT", f"{DEPLOYMENTS}/web", deployment("web"))
    assert status == 404


async def test_service_gets_cluster_ip_and_defaults(http: aiohttp.ClientSession) -> None:
    _, svc = await call(http, "POST", SERVICES, service())
    assert svc["spec"]["clusterIP"].startswith("10.96.")
    assert svc["spec"]["ports"][0]["protocol"] == "TCP"
    assert svc["spec"]["type"] == "ClusterIP"
    assert "generation" not in svc["metadata"]


# --- strategic merge patch -------------------------------------------------------------------


async def test_strategic_merge_of_containers_env_and_ports(http: aiohttp.ClientSession) -> None:
    obj = deployment("web")
    obj["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    await call(http, "POST", DEPLOYMENTS, obj)
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "proxy",
                            "env": [{"name": "RATE_LIMIT_INITIAL", "value": "5"}],
                            "ports": [{"containerPort": 9090, "name": "metrics"}],
                        },
                        {"name": "sidecar", "$patch": "delete"},
                    ]
                }
            }
        }
    }
    status, dep = await call(http, "PATCH", f"{DEPLOYMENTS}/web", patch, SMP)
    assert status == 200, dep
    (proxy,) = dep["spec"]["template"]["spec"]["containers"]
    assert proxy["image"] == "zai-proxy:v1"
    assert [e["name"] for e in proxy["env"]] == ["DEPLOYMENT_VARIANT", "RATE_LIMIT_INITIAL"]
    assert [p["containerPort"] for p in proxy["ports"]] == [8080, 9090]
    assert dep["metadata"]["generation"] == 2
    replace = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "proxy",
                            "env": [{"name": "ONLY", "value": "1"}, {"$patch": "replace"}],
                        }
                    ]
                }
            }
        }
    }
    _, dep = await call(http, "PATCH", f"{DEPLOYMENTS}/web", replace, SMP)
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "ONLY", "value": "1"}
    ]


# --- watch ----------------------------------------------------------------------------------


async def read_events(http: aiohttp.ClientSession, path: str, count: int) -> list[Obj]:
    events: list[Obj] = []
    async with http.get(path) as resp:
        assert resp.status == 200
        async for line in resp.content:
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


async def test_watch_with_selector_sends_added_and_deleted_on_label_changes(
    http: aiohttp.ClientSession, api_server: ApiServer
) -> None:
    created = api_server.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"x": "1"}}}
    )
    rv = created["metadata"]["resourceVersion"]
    api_server.patch("ConfigMap", "c", {"metadata": {"labels": {"x": "2"}}})
    api_server.patch("ConfigMap", "c", {"metadata": {"labels": {"x": "1"}}})
    api_server.patch("ConfigMap", "c", {"data": {"k": "v"}})
    api_server.delete("ConfigMap", "c")
    events = await read_events(
        http,
        f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&labelSelector=x%3D1",
        4,
    )
    assert [e["type"] for e in events] == ["DELETED", "ADDED", "MODIFIED", "DELETED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(rv)


async def test_watch_timeout_seconds_ends_the_stream(
    http: aiohttp.ClientSession, api_server: ApiServer
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    rv = api_server.store.resource_version
    async with http.get(f"{PODS}?watch=true&resourceVersion={rv}&timeoutSeconds=1") as resp:
        assert await resp.read() == b""
    assert 0.9 <= loop.time() - start < 3


async def test_list_has_resource_version_and_pages(
    http: aiohttp.ClientSession, api_server: ApiServer
) -> None:
    for i in range(5):
        api_server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
    _, page = await call(http, "GET", "/api/v1/namespaces/default/configmaps?limit=2")
    assert page["metadata"]["resourceVersion"] == str(api_server.store.resource_version)
    names = [i["metadata"]["name"] for i in page["items"]]
    while page["metadata"].get("continue"):
        _, page = await call(
            http,
            "GET",
            f"/api/v1/namespaces/default/configmaps?limit=2&continue={page['metadata']['continue']}",
        )
        names += [i["metadata"]["name"] for i in page["items"]]
    assert names == ["c0", "c1", "c2", "c3", "c4"]


# --- faults and accounting ----------------------------------------------------------------------


async def test_injected_429_has_retry_after_and_faults_can_be_cleared(
    http: aiohttp.ClientSession, api_server: ApiServer
) -> None:
    api_server.set_faults(error_rate=1.0, error_code=429, retry_after=3, verbs={"list"})
    async with http.get(PODS) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "3"
        assert (await resp.json())["reason"] == "TooManyRequests"
    assert (await call(http, "POST", SERVICES, service()))[0] == 201  # other verbs unaffected
    api_server.set_faults(error_code=500, verbs=None)
    assert (await call(http, "GET", f"{SERVICES}/web"))[0] == 500
    api_server.clear_faults()
    assert (await call(http, "GET", f"{SERVICES}/web"))[0] == 200


async def test_latency_fault_delays_answers(
    http: aiohttp.ClientSession, api_server: ApiServer
) -> None:
    api_server.set_faults(latency=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await call(http, "GET", PODS)
    assert loop.time() - start >= 0.2


async def test_request_counts_by_verb_resource_and_user(
    http: aiohttp.ClientSession, api_server: ApiServer
) -> None:
    api_server.add_token("t1", "alice")
    await call(http, "POST", SERVICES, service(), {"Authorization": "Bearer t1"})
    await call(
        http,
        "PATCH",
        f"{SERVICES}/web",
        {"metadata": {"labels": {"a": "b"}}},
        {**MERGE, "Authorization": "Bearer t1"},
    )
    await call(http, "GET", PODS)
    assert api_server.count(verb="create", resource="services", user="alice") == 1
    assert api_server.count(verb="patch", user="alice") == 1
    assert api_server.count(verb="list", resource="pods", user="system:anonymous") == 1
    status, body = await call(http, "GET", PODS, headers={"Authorization": "Bearer wrong"})
    assert (status, body["reason"]) == (401, "Unauthorized")


async def test_cut_watches_ends_open_streams(
    http: aiohttp.ClientSession, api_server: ApiServer
) -> None:
    rv = api_server.store.resource_version
    async with http.get(f"{PODS}?watch=true&resourceVersion={rv}") as resp:
        reader = asyncio.create_task(resp.read())
        await asyncio.sleep(0.05)
        assert api_server.cut_watches() == 1
        assert await asyncio.wait_for(reader, 2) == b""
