"""PERMISSIONS is exactly what the adapter needs: enough for every operation, nothing spare."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.sandbox.apiaccess import Rule
from controller.sandbox.apiserver import ApiServer
from controller.shell.kube import PERMISSIONS, Forbidden, Informer, Kube, KubeError, Permission
from controller.shell.kube.permissions import triples
from tests.integration.conftest import FAST, eventually
from tests.sandbox.conftest import deployment, service

NS = "default"
USER = "system:serviceaccount:ptc:ptc"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# Which operation each permission exists for: removing it must make that operation fail.
NEEDED_BY: dict[tuple[str, str, str], str] = {
    ("", "pods", "list"): "list_pods",
    ("", "pods", "watch"): "watch pods",
    ("", "services", "get"): "get_service",
    ("", "services", "list"): "list services",
    ("", "services", "watch"): "watch services",
    ("", "services", "patch"): "patch_service",
    ("", "events", "create"): "emit_event",
    ("", "events", "patch"): "emit_event again",
    ("apps", "deployments", "get"): "get_deployment",
    ("apps", "deployments", "list"): "list deployments",
    ("apps", "deployments", "watch"): "watch deployments",
    ("apps", "deployments", "patch"): "annotate_deployment",
    ("apps", "deployments", "delete"): "delete_deployment",
    ("apps", "deployments/scale", "patch"): "scale",
    ("autoscaling", "horizontalpodautoscalers", "list"): "list_autoscalers",
    ("discovery.k8s.io", "endpointslices", "list"): "list endpointslices",
    ("discovery.k8s.io", "endpointslices", "watch"): "watch endpointslices",
    ("", "configmaps", "get"): "get_configmap",
    ("", "configmaps", "create"): "create_configmap",
    ("", "configmaps", "update"): "update_configmap",
    ("", "configmaps", "patch"): "annotate_configmap",
    ("coordination.k8s.io", "leases", "get"): "get_lease",
    ("coordination.k8s.io", "leases", "create"): "create_lease",
    ("coordination.k8s.io", "leases", "update"): "update_lease",
}


def rules_without(missing: tuple[str, str, str] | None) -> list[Rule]:
    """PERMISSIONS as sandbox RBAC rules, minus one (group, resource, verb)."""
    rules = []
    for p in PERMISSIONS:
        verbs = tuple(v for v in p.verbs if (p.api_group, p.resource, v) != missing)
        if verbs:
            rules.append(Rule((p.api_group,), (p.resource,), verbs))
    return rules


async def exercise(kube: Kube, api: ApiServer) -> dict[str, BaseException | str]:
    """Every adapter operation once, as the daemon and the leader elector use them.

    Returns what failed: operation name -> the error (or a description for silent failures).
    """
    failures: dict[str, BaseException | str] = {}

    async def attempt(name: str, op: Callable[[], Any]) -> Any:
        try:
            return await op()
        except KubeError as e:
            failures[name] = e
            return None

    svc = await attempt("get_service", lambda: kube.get_service(NS, "web"))
    if svc is not None:
        await attempt(
            "patch_service",
            lambda: kube.patch_service(
                NS,
                "web",
                resource_version=svc.resource_version,
                selector={"app": "web"},
                annotations={"ptc.dev/state": "{}"},
            ),
        )
    await attempt("get_deployment", lambda: kube.get_deployment(NS, "web"))
    await attempt("scale", lambda: kube.scale(NS, "web-v2", 2))
    await attempt(
        "annotate_deployment",
        lambda: kube.annotate_deployment(NS, "web-v2", {"ptc.dev/claim": "me/1"}),
    )
    await attempt("list_pods", lambda: kube.list_pods(NS, {"app": "web"}))
    await attempt("list_autoscalers", lambda: kube.list_autoscalers(NS))
    await attempt("delete_deployment", lambda: kube.delete_deployment(NS, "doomed"))
    if not await kube.emit_event(NS, svc.ref() if svc else _ref(), "Normal", "Probe", "rbac"):
        failures["emit_event"] = "event not recorded"
    elif not await kube.emit_event(NS, svc.ref() if svc else _ref(), "Normal", "Probe", "rbac"):
        failures["emit_event again"] = "event not recorded"  # a repeat patches its count
    cm_version = await attempt(
        "create_configmap",
        lambda: kube.write_configmap(
            NS, "ptc-history-web", {"history": "[]"}, resource_version=None
        ),
    )
    got = await attempt("get_configmap", lambda: kube.get_configmap(NS, "ptc-history-web"))
    version = cm_version or (got[1] if got else None)
    if version is not None:
        await attempt(
            "update_configmap",
            lambda: kube.write_configmap(
                NS, "ptc-history-web", {"history": "[1]"}, resource_version=version
            ),
        )
    await attempt(
        "annotate_configmap",
        lambda: kube.annotate_configmap(NS, "ptc-history-web", {"ptc.dev/claim": "me/1"}),
    )
    lease = await attempt(
        "create_lease",
        lambda: kube.create_lease(
            NS, "ptc", holder="me", duration_seconds=15, acquire_time=T0, renew_time=T0
        ),
    )
    await attempt("get_lease", lambda: kube.get_lease(NS, "ptc"))
    if lease is not None:
        await attempt(
            "update_lease",
            lambda: kube.update_lease(
                NS,
                "ptc",
                resource_version=lease.resource_version,
                holder="me",
                duration_seconds=15,
                acquire_time=T0,
                renew_time=T0,
                transitions=0,
            ),
        )

    # informers: list (sync) then watch (a change made afterwards must arrive)
    pods, deps = kube.informer("pods", NS), kube.informer("deployments", NS)
    svcs, slices = kube.informer("services", NS), kube.informer("endpointslices", NS)
    informers: dict[str, Informer[Any]] = {
        "pods": pods,
        "deployments": deps,
        "services": svcs,
        "endpointslices": slices,
    }
    synced = {}
    for kind, inf in informers.items():
        await inf.start()
        await attempt(f"list {kind}", lambda inf=inf: inf.wait_synced(2))  # type: ignore[misc]
        synced[kind] = f"list {kind}" not in failures
    api.create(service("probe", {"app": "probe"}))
    api.patch("Deployment", "web", {"spec": {"replicas": 3}}, subresource="scale")
    arrived: dict[str, Callable[[], bool]] = {
        "services": lambda: informers["services"].get("probe") is not None,
        "deployments": lambda: (
            getattr(informers["deployments"].get("web"), "spec_replicas", 0) == 3
        ),
        "pods": lambda: sum(p.deployment == "web" for p in informers["pods"].items()) == 3,
        "endpointslices": lambda: any(
            s.service == "probe" for s in informers["endpointslices"].items()
        ),
    }
    for kind, inf in informers.items():
        if not synced[kind]:
            continue
        await eventually(
            lambda k=kind, i=inf: arrived[k]() or isinstance(i.last_error, Forbidden)  # type: ignore[misc]
        )
        if not arrived[kind]():
            failures[f"watch {kind}"] = inf.last_error or "no events"
    return failures


def _ref() -> Any:
    from controller.shell.kube import ObjectRef

    return ObjectRef("Service", NS, "web")


async def build_world(api: ApiServer) -> None:
    api.create(service("web", {"app": "web"}))
    api.create(deployment("web", replicas=1, version="v1"))
    api.create(deployment("web-v2", replicas=1, version="v2"))
    api.create(deployment("doomed", replicas=0, version="x", app="doomed"))


async def connect_as(api: ApiServer, tmp_path: Path, rules: list[Rule]) -> Kube:
    api.add_token("ptc-token", USER, rules)
    return await Kube.connect(
        str(api.write_kubeconfig(tmp_path / "kc", token="ptc-token")), policy=FAST
    )


async def test_permissions_cover_every_operation_and_nothing_more(
    api_server: ApiServer, workload: Any, tmp_path: Path
) -> None:
    await build_world(api_server)
    kube = await connect_as(api_server, tmp_path, rules_without(None))
    try:
        failures = await exercise(kube, api_server)
    finally:
        await kube.close()
    assert failures == {}
    used = {
        (k.group, k.resource, k.verb)
        for k in api_server.request_counts()
        if k.user == USER and not k.resource.startswith("/")  # discovery (/version) aside
    }
    assert used == set(triples()), (
        f"unused: {set(triples()) - used}; used but not granted: {used - set(triples())}"
    )


@pytest.mark.parametrize("missing", list(triples()), ids="/".join)
async def test_removing_any_permission_breaks_an_operation(
    api_server: ApiServer, workload: Any, tmp_path: Path, missing: tuple[str, str, str]
) -> None:
    await build_world(api_server)
    kube = await connect_as(api_server, tmp_path, rules_without(missing))
    try:
        failures = await exercise(kube, api_server)
    finally:
        await kube.close()
    assert NEEDED_BY[missing] in failures, failures
    error = failures[NEEDED_BY[missing]]
    assert isinstance(error, Forbidden) or error == "event not recorded", error


def test_permissions_are_well_formed() -> None:
    assert set(NEEDED_BY) == set(triples()), "say which operation a new permission is for"
    keys = [(p.api_group, p.resource) for p in PERMISSIONS]
    assert len(keys) == len(set(keys)), "one entry per (group, resource)"
    for p in PERMISSIONS:
        assert isinstance(p, Permission) and p.verbs
        assert len(set(p.verbs)) == len(p.verbs)
        assert set(p.verbs) <= {"get", "list", "watch", "create", "update", "patch", "delete"}
