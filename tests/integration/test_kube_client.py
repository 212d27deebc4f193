"""The Kube adapter's requests against the sandbox API server: reads, writes, errors, retries."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.sandbox.apiaccess import rule
from controller.sandbox.apiserver import ApiServer
from controller.sandbox.workload import Workload
from controller.shell.kube import (
    Conflict,
    DeploymentInfo,
    Forbidden,
    Invalid,
    Kube,
    KubeError,
    NotFound,
    ObjectRef,
    Unauthorized,
    Unavailable,
)
from tests.integration.conftest import FAST, ready_pods
from tests.sandbox.conftest import deployment, service, wait_until

NS = "default"


# --- connect -------------------------------------------------------------------------------


async def test_connect_gives_a_fresh_client_each_time(kubeconfig: Path) -> None:
    a = await Kube.connect(str(kubeconfig), policy=FAST)
    b = await Kube.connect(str(kubeconfig), policy=FAST)
    try:
        assert a._transport._api is not b._transport._api
        await a.close()
        # closing one does not break the other (kr8s would have shared a cached Api)
        with pytest.raises(NotFound):
            await b.get_service(NS, "missing")
    finally:
        await b.close()


async def test_connect_to_nothing_is_unavailable_after_retries(tmp_path: Path) -> None:
    server = ApiServer()
    await server.start()
    config = server.write_kubeconfig(tmp_path / "kubeconfig")
    await server.stop()  # the port is now closed: connection refused
    with pytest.raises(Unavailable) as err:
        await Kube.connect(str(config), policy=FAST)
    assert isinstance(err.value.__cause__, Exception)


async def test_timeout_argument_overrides_policy(kubeconfig: Path) -> None:
    client = await Kube.connect(str(kubeconfig), timeout=1.5, policy=FAST)
    try:
        assert client.policy.timeout == 1.5
        assert client.policy.attempts == FAST.attempts
    finally:
        await client.close()


# --- reads ---------------------------------------------------------------------------------


async def test_get_service_and_deployment(world: ApiServer, kube: Kube) -> None:
    svc = await kube.get_service(NS, "web")
    assert (svc.namespace, svc.name, dict(svc.selector)) == (NS, "web", {"app": "web"})
    assert svc.uid and svc.resource_version
    assert dict(svc.annotations) == {}

    await wait_until(
        world.store,
        lambda: world.get("Deployment", "web")["status"].get("readyReplicas") == 2,
    )
    dep = await kube.get_deployment(NS, "web")
    assert isinstance(dep, DeploymentInfo)
    assert (dep.spec_replicas, dep.ready_replicas) == (2, 2)
    assert dict(dep.selector) == {"app": "web", "version": "v1"}
    assert dict(dep.template_labels) == {"app": "web", "version": "v1"}
    assert dict(dep.template_env) == {"DEPLOYMENT_VARIANT": "v1"}
    assert dep.generation == dep.observed_generation == 1
    assert dep.rolled_out


async def test_list_pods_by_selector_with_deployment_and_readiness(
    world: ApiServer, kube: Kube
) -> None:
    pods = await kube.list_pods(NS, {"app": "web", "version": "v1"})
    assert len(pods) == 2
    assert all(p.deployment == "web" for p in pods)
    assert all(p.ready and not p.terminating for p in pods)
    assert all(p.ip and p.ip.startswith("127.") for p in pods)
    assert all(p.container_ports == (8080,) for p in pods)
    assert all(p.labels["pod-template-hash"] for p in pods)
    assert [p.name for p in pods] == sorted(p.name for p in pods)

    canary = await kube.list_pods(NS, {"app": "web", "version": "v2"})
    assert [p.deployment for p in canary] == ["web-v2"]
    assert await kube.list_pods(NS, {"app": "nothing"}) == []
    assert len(await kube.list_pods(NS, {})) == 3


async def test_list_pods_follows_pagination(world: ApiServer, kube: Kube) -> None:
    world.patch("Deployment", "web", {"spec": {"replicas": 7}}, subresource="scale")
    await wait_until(world.store, lambda: len(world.list("Pod", label_selector="app=web")) == 8)
    import controller.shell.kube.workloads as client_module

    world.reset_counts()
    old = client_module._LIST_PAGE
    client_module._LIST_PAGE = 3
    try:
        pods = await kube.list_pods(NS, {"app": "web"})
    finally:
        client_module._LIST_PAGE = old
    assert len({p.name for p in pods}) == 8
    assert world.count(verb="list", resource="pods") == 3


async def test_terminating_pod_is_not_ready(
    world: ApiServer, workload: Workload, kube: Kube
) -> None:
    workload.termination_grace = 5.0  # keep it terminating while we look
    victim = (await kube.list_pods(NS, {"version": "v2"}))[0]
    world.delete("Pod", victim.name, grace_period=30)
    (pod,) = [p for p in await kube.list_pods(NS, {"version": "v2"}) if p.name == victim.name]
    assert pod.terminating and not pod.ready


# --- scale ---------------------------------------------------------------------------------


async def test_scale_patches_the_scale_subresource_only(world: ApiServer, kube: Kube) -> None:
    world.reset_counts()
    await kube.scale(NS, "web-v2", 3)
    counts = world.request_counts()
    writes = {(k.verb, k.group, k.resource): n for k, n in counts.items() if k.verb != "get"}
    assert writes == {("patch", "apps", "deployments/scale"): 1}
    assert world.get("Deployment", "web-v2")["spec"]["replicas"] == 3
    await wait_until(world.store, lambda: ready_pods(world, "version=v2") == 3)
    dep = await kube.get_deployment(NS, "web-v2")
    assert (dep.spec_replicas, dep.ready_replicas, dep.generation) == (3, 3, 2)

    await kube.scale(NS, "web-v2", 0)
    await wait_until(world.store, lambda: not world.list("Pod", label_selector="version=v2"))


async def test_scale_missing_deployment_is_not_found(api_server: ApiServer, kube: Kube) -> None:
    with pytest.raises(NotFound) as err:
        await kube.scale(NS, "ghost", 1)
    assert err.value.status == 404
    assert "ghost" in str(err.value)


async def test_scale_to_negative_is_refused_before_any_request(
    api_server: ApiServer, kube: Kube
) -> None:
    api_server.reset_counts()
    with pytest.raises(ValueError):
        await kube.scale(NS, "web", -1)
    assert api_server.count() == 0


# --- patch_service -------------------------------------------------------------------------


async def test_patch_service_replaces_selector_and_annotations_in_one_patch(
    api_server: ApiServer, kube: Kube
) -> None:
    svc_obj = service("web", {"app": "web", "version": "v1", "tier": "front"})
    svc_obj["metadata"]["annotations"] = {"keep": "me", "drop": "me", "ptc.dev/state": "{}"}
    api_server.create(svc_obj)
    svc = await kube.get_service(NS, "web")
    api_server.reset_counts()

    patched = await kube.patch_service(
        NS,
        "web",
        resource_version=svc.resource_version,
        selector={"app": "web", "version": "v2"},
        annotations={"ptc.dev/state": '{"phase":"Flipped"}', "drop": None},
    )

    assert api_server.count(verb="patch", resource="services") == 1
    assert dict(patched.selector) == {"app": "web", "version": "v2"}  # "tier" really gone
    assert dict(patched.annotations) == {"keep": "me", "ptc.dev/state": '{"phase":"Flipped"}'}
    stored = api_server.get("Service", "web")
    assert stored["spec"]["selector"] == {"app": "web", "version": "v2"}
    assert "drop" not in stored["metadata"]["annotations"]
    assert patched.resource_version == stored["metadata"]["resourceVersion"]
    assert patched.resource_version != svc.resource_version


async def test_patch_service_uses_the_informer_cache_instead_of_a_get(
    api_server: ApiServer, kube: Kube
) -> None:
    api_server.create(service("web", {"app": "web", "version": "v1"}))
    informer = kube.informer("services", NS)
    await informer.start()
    await informer.wait_synced(2)
    cached = informer.get("web")
    assert cached is not None
    api_server.reset_counts()
    await kube.patch_service(
        NS, "web", resource_version=cached.resource_version, selector={"app": "web"}
    )
    assert api_server.count(verb="get", resource="services") == 0
    assert api_server.count(verb="patch", resource="services") == 1
    assert api_server.get("Service", "web")["spec"]["selector"] == {"app": "web"}


async def test_patch_service_annotations_only_keeps_selector(
    api_server: ApiServer, kube: Kube
) -> None:
    api_server.create(service("web", {"app": "web", "version": "v1"}))
    svc = await kube.get_service(NS, "web")
    api_server.reset_counts()
    patched = await kube.patch_service(
        NS, "web", resource_version=svc.resource_version, annotations={"a": "1"}
    )
    assert api_server.count() == 1  # no read needed: nothing to null out
    assert dict(patched.selector) == {"app": "web", "version": "v1"}
    assert dict(patched.annotations) == {"a": "1"}


async def test_patch_service_stale_resource_version_is_conflict(
    api_server: ApiServer, kube: Kube
) -> None:
    api_server.create(service("web", {"app": "web"}))
    stale = (await kube.get_service(NS, "web")).resource_version
    api_server.patch("Service", "web", {"metadata": {"annotations": {"someone": "else"}}})

    with pytest.raises(Conflict) as err:
        await kube.patch_service(NS, "web", resource_version=stale, annotations={"a": "1"})
    assert err.value.status == 409
    with pytest.raises(Conflict):
        await kube.patch_service(NS, "web", resource_version=stale, selector={"app": "x"})
    stored = api_server.get("Service", "web")
    assert stored["spec"]["selector"] == {"app": "web"}
    assert stored["metadata"]["annotations"] == {"someone": "else"}


async def test_patch_service_retry_after_lost_answer_is_not_a_conflict(
    api_server: ApiServer, kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A patch that landed but whose answer was lost: the retry's 409 is recognised as ours."""
    api_server.create(service("web", {"app": "web"}))
    svc = await kube.get_service(NS, "web")
    transport = kube._transport
    real_request = transport.request
    lost: list[object] = []

    async def lose_first_patch_answer(method: str, *args: object, **kwargs: object) -> object:
        result = await real_request(method, *args, **kwargs)  # type: ignore[arg-type]
        if method == "PATCH" and not lost:
            lost.append(result)
            raise Unavailable("answer lost")
        return result

    monkeypatch.setattr(transport, "request", lose_first_patch_answer)
    patched = await kube.patch_service(
        NS, "web", resource_version=svc.resource_version, annotations={"step": "3"}
    )
    assert lost and patched.annotations["step"] == "3"
    assert kube.retries == 1


async def test_patch_service_requires_a_resource_version(kube: Kube) -> None:
    with pytest.raises(ValueError):
        await kube.patch_service(NS, "web", resource_version="", annotations={"a": "1"})


async def test_patch_service_invalid_selector_is_invalid(api_server: ApiServer, kube: Kube) -> None:
    api_server.create(service("web", {"app": "web"}))
    svc = await kube.get_service(NS, "web")
    with pytest.raises(Invalid) as err:
        await kube.patch_service(
            NS, "web", resource_version=svc.resource_version, selector={"app": "not valid!"}
        )
    assert err.value.status == 422
    assert api_server.get("Service", "web")["spec"]["selector"] == {"app": "web"}


# --- delete --------------------------------------------------------------------------------


async def test_delete_deployment_removes_it_and_its_pods(world: ApiServer, kube: Kube) -> None:
    await kube.delete_deployment(NS, "web-v2")
    with pytest.raises(NotFound):
        await kube.get_deployment(NS, "web-v2")
    await wait_until(world.store, lambda: not world.list("Pod", label_selector="version=v2"))
    with pytest.raises(NotFound):
        await kube.delete_deployment(NS, "web-v2")


async def test_delete_deployment_with_uid_precondition(world: ApiServer, kube: Kube) -> None:
    with pytest.raises(Conflict):
        await kube.delete_deployment(NS, "web-v2", uid="not-its-uid")
    dep = await kube.get_deployment(NS, "web-v2")
    await kube.delete_deployment(NS, "web-v2", uid=dep.uid)
    with pytest.raises(NotFound):
        await kube.get_deployment(NS, "web-v2")


# --- events --------------------------------------------------------------------------------


async def test_emit_event_creates_a_core_v1_event(api_server: ApiServer, tmp_path: Path) -> None:
    fixed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    config = api_server.write_kubeconfig(tmp_path / "kc")
    client = await Kube.connect(str(config), policy=FAST, clock=lambda: fixed, instance="ptc-0")
    try:
        api_server.create(service("web"))
        svc = await client.get_service(NS, "web")
        for message in ("weight 25% (1/3 pods)", "weight 50% (2/2 pods)"):
            assert await client.emit_event(NS, svc.ref(), "Normal", "StepAdvanced", message)
    finally:
        await client.close()
    events = sorted(api_server.list("Event"), key=lambda e: e["message"])
    assert len(events) == 2  # unique names even with a frozen clock
    event = events[0]
    assert event["metadata"]["name"].startswith("web.")
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Service",
        "namespace": NS,
        "name": "web",
        "uid": svc.uid,
    }
    assert (event["type"], event["reason"], event["message"]) == (
        "Normal",
        "StepAdvanced",
        "weight 25% (1/3 pods)",
    )
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-01-02T03:04:05Z"
    assert event["count"] == 1
    assert event["source"]["component"] == event["reportingComponent"] == "ptc"
    assert event["reportingInstance"] == "ptc-0"


async def test_a_repeated_event_bumps_the_count_of_the_recorded_one(
    api_server: ApiServer, tmp_path: Path
) -> None:
    now = [datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)]
    config = api_server.write_kubeconfig(tmp_path / "kc")
    client = await Kube.connect(str(config), policy=FAST, clock=lambda: now[0], instance="ptc-0")
    ref = ObjectRef("Service", NS, "web")

    async def emit(message: str = "config generation 2 applied") -> None:
        assert await client.emit_event(NS, ref, "Normal", "ConfigApplied", message)

    try:
        await emit()
        for _ in range(4):
            now[0] += timedelta(minutes=2)
            await emit()
        [event] = api_server.list("Event")
        assert event["count"] == 5
        assert event["firstTimestamp"] == "2026-01-02T03:00:00Z"
        assert event["lastTimestamp"] == "2026-01-02T03:08:00Z"
        assert api_server.count(verb="create", resource="events") == 1
        assert api_server.count(verb="patch", resource="events") == 4
        # Another message is another Event; so is a repeat after 10 quiet minutes.
        await emit("config generation 3 applied")
        now[0] += timedelta(minutes=11)
        await emit()
        assert sorted((e["message"], e["count"]) for e in api_server.list("Event")) == [
            ("config generation 2 applied", 1),
            ("config generation 2 applied", 5),
            ("config generation 3 applied", 1),
        ]
        # The server dropped the Event (its TTL): the next repeat records a new one.
        for e in api_server.list("Event"):
            api_server.delete("Event", e["metadata"]["name"], NS)
        now[0] += timedelta(minutes=1)
        await emit()
        [event] = api_server.list("Event")
        assert event["count"] == 1
    finally:
        await client.close()


async def test_emit_event_failure_is_logged_not_raised(api_server: ApiServer, kube: Kube) -> None:
    api_server.set_faults(error_rate=1.0, resources={"events"})
    ref = ObjectRef("Deployment", NS, "web", api_version="apps/v1")
    with capture_logs() as logs:
        recorded = await kube.emit_event(NS, ref, "Warning", "RolledBack", "x" * 5000)
    assert recorded is False
    assert api_server.count(verb="create", resource="events") == 1  # best effort: no retries
    (entry,) = [e for e in logs if e["event"] == "event not recorded"]
    assert entry["log_level"] == "warning"
    assert entry["reason"] == "RolledBack"
    api_server.clear_faults()
    assert await kube.emit_event(NS, ref, "Warning", "RolledBack", "x" * 5000)
    assert len(api_server.list("Event")[0]["message"]) == 1024


# --- leases --------------------------------------------------------------------------------


async def test_lease_lifecycle_with_optimistic_concurrency(
    api_server: ApiServer, kube: Kube
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(NotFound):
        await kube.get_lease(NS, "ptc-leader")
    created = await kube.create_lease(
        NS, "ptc-leader", holder="a", duration_seconds=15, acquire_time=t0, renew_time=t0
    )
    assert (created.holder, created.duration_seconds, created.transitions) == ("a", 15, 0)
    assert created.acquire_time == created.renew_time == t0
    with pytest.raises(Conflict):  # AlreadyExists
        await kube.create_lease(
            NS, "ptc-leader", holder="b", duration_seconds=15, acquire_time=t0, renew_time=t0
        )

    renewed = await kube.update_lease(
        NS,
        "ptc-leader",
        resource_version=created.resource_version,
        holder="a",
        duration_seconds=15,
        acquire_time=t0,
        renew_time=t0 + timedelta(seconds=5, microseconds=123456),
        transitions=0,
    )
    assert renewed.renew_time == t0 + timedelta(seconds=5, microseconds=123456)
    assert renewed.resource_version != created.resource_version
    # a second candidate still holding the old version loses
    with pytest.raises(Conflict):
        await kube.update_lease(
            NS,
            "ptc-leader",
            resource_version=created.resource_version,
            holder="b",
            duration_seconds=15,
            acquire_time=t0,
            renew_time=t0,
            transitions=1,
        )
    assert (await kube.get_lease(NS, "ptc-leader")) == renewed
    stored = api_server.get("Lease", "ptc-leader")
    assert stored["spec"]["renewTime"] == "2026-01-01T00:00:05.123456Z"


async def test_lease_invalid_duration_is_invalid(kube: Kube) -> None:
    with pytest.raises(Invalid):
        await kube.create_lease(
            NS, "bad", holder="a", duration_seconds=0, acquire_time=None, renew_time=None
        )


# --- error translation and retries ----------------------------------------------------------


async def test_forbidden_and_unauthorized(api_server: ApiServer, tmp_path: Path) -> None:
    api_server.create(service("web"))
    api_server.add_token("reader", "system:serviceaccount:ptc:ptc", [rule("", "services", "get")])
    reader = await Kube.connect(
        str(api_server.write_kubeconfig(tmp_path / "r", token="reader")), policy=FAST
    )
    try:
        assert (await reader.get_service(NS, "web")).name == "web"
        with pytest.raises(Forbidden) as err:
            await reader.get_deployment(NS, "web")
        assert err.value.status == 403 and err.value.reason == "Forbidden"
        assert 'cannot get resource "deployments"' in str(err.value)
        assert reader.retries == 0
    finally:
        await reader.close()

    # an unknown token already fails the version check on connect
    with pytest.raises(Unauthorized):
        await Kube.connect(
            str(api_server.write_kubeconfig(tmp_path / "x", token="nope")), policy=FAST
        )


async def test_unavailable_is_retried_until_it_succeeds(api_server: ApiServer, kube: Kube) -> None:
    api_server.create(deployment("web", replicas=1))
    # every patch fails until we clear the fault from the retry log hook
    api_server.set_faults(error_rate=1.0, resources={"deployments/scale"})
    seen: list[object] = []

    def clear_after_two(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
        if event_dict.get("event") == "api request retry":
            seen.append(event_dict["attempt"])
            if len(seen) == 2:
                api_server.clear_faults()
        return event_dict

    with capture_logs(processors=[clear_after_two]):
        await kube.scale(NS, "web", 2)
    assert seen == [1, 2]
    assert api_server.count(verb="patch", resource="deployments/scale") == 3
    assert api_server.get("Deployment", "web")["spec"]["replicas"] == 2
    assert kube.retries == 2


async def test_unavailable_gives_up_after_the_attempt_cap(
    api_server: ApiServer, kube: Kube
) -> None:
    api_server.create(service("web"))
    api_server.set_faults(error_rate=1.0, error_code=500)
    with pytest.raises(Unavailable) as err:
        await kube.get_service(NS, "web")
    assert err.value.status == 500
    assert api_server.count(verb="get", resource="services") == FAST.attempts
    assert err.value.__cause__ is not None  # chained to the kr8s error


async def test_429_is_retried_honouring_retry_after_up_to_the_cap(
    api_server: ApiServer, kube: Kube
) -> None:
    api_server.create(service("web"))
    api_server.set_faults(error_rate=1.0, error_code=429, retry_after=30)
    loop_time = __import__("asyncio").get_running_loop().time
    start = loop_time()
    with pytest.raises(Unavailable) as err:
        await kube.get_service(NS, "web")
    # Retry-After 30 s is capped by backoff_max, so 3 waits stay well under a second
    assert loop_time() - start < 1.0
    assert err.value.status == 429 and err.value.retry_after == 30


async def test_conflict_not_found_forbidden_invalid_are_not_retried(
    api_server: ApiServer, kube: Kube
) -> None:
    api_server.reset_counts()
    with pytest.raises(NotFound):
        await kube.get_deployment(NS, "ghost")
    assert api_server.count(verb="get", resource="deployments") == 1
    assert kube.retries == 0


async def test_a_hung_server_times_out_as_unavailable(
    api_server: ApiServer, tmp_path: Path
) -> None:
    api_server.create(service("web"))
    client = await Kube.connect(
        str(api_server.write_kubeconfig(tmp_path / "kc")),
        # Long enough that connecting (GET /version, no fault) never times out on a busy machine.
        policy=replace(FAST, timeout=0.5, attempts=2),
    )
    try:
        api_server.set_faults(latency=1.5, verbs={"get"})
        with pytest.raises(Unavailable, match="timed out"):
            await client.get_service(NS, "web")
        assert api_server.count(verb="get", resource="services") == 2
    finally:
        api_server.clear_faults()
        await client.close()


async def test_errors_are_kube_errors_chained_to_their_cause(
    api_server: ApiServer, kube: Kube
) -> None:
    with pytest.raises(KubeError) as err:
        await kube.get_service(NS, "ghost")
    assert type(err.value) is NotFound
    assert err.value.reason == "NotFound"
    assert type(err.value.__cause__).__module__.startswith("kr8s")


# --- autoscalers ---------------------------------------------------------------------------


async def test_list_autoscalers_reads_their_targets_and_bounds(
    api_server: ApiServer, kube: Kube
) -> None:
    def hpa(name: str, target: str, low: int, high: int) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": low,
                "maxReplicas": high,
            },
        }

    assert await kube.list_autoscalers(NS) == []
    api_server.create(hpa("web", "web", 2, 6))
    [found] = await kube.list_autoscalers(NS)
    assert (found.name, found.target_kind, found.target_name) == ("web", "Deployment", "web")
    assert (found.min_replicas, found.max_replicas) == (2, 6)
    # The sandbox refuses what the real server refuses.
    with pytest.raises(Exception, match="must be greater than or equal to `minReplicas`"):
        api_server.create(hpa("bad", "web", 5, 2))
