"""Parsing API objects into the adapter's frozen views (pure), and error translation."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import kr8s
import pytest

from controller.core.objects import (
    FrozenMap,
    deployment_info,
    endpoint_slice_info,
    lease_info,
    lease_spec,
    pod_info,
    service_info,
)
from controller.shell.kube import errors


def _pod(**meta: object) -> dict[str, object]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "web-v2-5d8f-abcde",
            "uid": "u1",
            "labels": {"app": "web", "pod-template-hash": "5d8f"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "web-v2-5d8f", "controller": True, "uid": "r"}
            ],
            **meta,
        },
        "spec": {
            "containers": [
                {"name": "a", "ports": [{"containerPort": 8080}, {"containerPort": 9090}]},
                {"name": "b", "ports": [{"containerPort": 15000}]},
            ]
        },
        "status": {"podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_pod_deployment_strips_the_template_hash() -> None:
    pod = pod_info(_pod())
    assert pod.deployment == "web-v2"  # a Deployment name that itself contains dashes
    assert pod.ready and not pod.terminating
    assert pod.ip == "10.0.0.7"
    assert pod.container_ports == (8080, 9090, 15000)


@pytest.mark.parametrize(
    ("owners", "labels", "expected"),
    [
        ([], {"pod-template-hash": "5d8f"}, None),  # a bare pod
        ([{"kind": "ReplicaSet", "name": "rs-by-hand", "controller": True}], {}, None),
        ([{"kind": "ReplicaSet", "name": "other-zzz", "controller": True}], None, None),
        ([{"kind": "StatefulSet", "name": "db-5d8f", "controller": True}], None, None),
        ([{"kind": "ReplicaSet", "name": "web-5d8f", "controller": False}], None, None),
        ([{"kind": "ReplicaSet", "name": "-5d8f", "controller": True}], None, None),
    ],
)
def test_pod_without_a_deployment(
    owners: list[dict[str, object]], labels: dict[str, str] | None, expected: str | None
) -> None:
    raw = _pod(ownerReferences=owners)
    if labels is not None:
        raw["metadata"]["labels"] = labels  # type: ignore[index]
    assert pod_info(raw).deployment == expected


def test_terminating_pod_is_never_ready_and_unready_pod_has_no_ip() -> None:
    pod = pod_info(_pod(deletionTimestamp="2026-01-01T00:00:00Z"))
    assert pod.terminating and not pod.ready
    raw = _pod()
    raw["status"] = {"conditions": [{"type": "Ready", "status": "False"}]}
    pod = pod_info(raw)
    assert not pod.ready and pod.ip is None


def test_pod_started_at_is_the_latest_running_container_else_the_pod_start() -> None:
    raw = _pod()
    status: dict[str, object] = raw["status"]  # type: ignore[assignment]
    assert pod_info(raw).started_at is None
    status["startTime"] = "2026-01-01T00:00:00Z"
    assert pod_info(raw).started_at == datetime(2026, 1, 1, tzinfo=UTC)
    status["containerStatuses"] = [
        {"name": "a", "state": {"running": {"startedAt": "2026-01-01T00:00:05Z"}}},
        # restarted later: its process (and its metrics) are younger
        {"name": "b", "state": {"running": {"startedAt": "2026-01-01T01:00:00Z"}}},
        {"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
        {"name": "d", "state": "garbage"},
        "garbage",
    ]
    assert pod_info(raw).started_at == datetime(2026, 1, 1, 1, tzinfo=UTC)


def test_deployment_defaults_and_env_of_first_container() -> None:
    dep = deployment_info(
        {
            "metadata": {"namespace": "ns", "name": "web", "uid": "u", "generation": 3},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "version": "v2"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "proxy",
                                "env": [
                                    {"name": "DEPLOYMENT_VARIANT", "value": "canary"},
                                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {}}},
                                ],
                            },
                            {"name": "sidecar", "env": [{"name": "OTHER", "value": "x"}]},
                        ]
                    },
                },
            },
            "status": {"observedGeneration": 2},
        }
    )
    assert dep.spec_replicas == 1  # defaulted like the API server does
    assert dep.ready_replicas == 0 and dep.replicas == 0
    assert dict(dep.template_env) == {"DEPLOYMENT_VARIANT": "canary"}
    assert (dep.generation, dep.observed_generation) == (3, 2)
    assert not dep.rolled_out
    assert dep.ref().api_version == "apps/v1"


def test_endpoint_conditions_nil_means_what_the_api_documents() -> None:
    es = endpoint_slice_info(
        {
            "metadata": {
                "namespace": "ns",
                "name": "web-x",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "endpoints": [
                {"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "p1"}},
                {
                    "addresses": ["10.0.0.2"],
                    "conditions": {"ready": False, "serving": True, "terminating": True},
                    "targetRef": {"kind": "Pod", "name": "p2"},
                },
                {"addresses": ["10.0.0.3"], "conditions": {"ready": False}},
                {"addresses": []},
            ],
        }
    )
    assert es.service == "web"
    a, b, c = es.endpoints
    assert (a.ready, a.serving, a.terminating, a.pod) == (True, True, False, "p1")
    assert (b.ready, b.serving, b.terminating, b.pod) == (False, True, True, "p2")
    assert (c.ready, c.serving, c.pod) == (False, False, None)  # serving nil follows ready
    assert endpoint_slice_info({"metadata": {"name": "e"}, "endpoints": None}).endpoints == ()


def test_views_are_frozen_hashable_and_compare_by_value() -> None:
    raw = {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "7"},
        "spec": {"selector": {"app": "web"}},
    }
    a, b = service_info(raw), service_info(raw)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.selector["app"] = "x"  # type: ignore[index]
    assert FrozenMap({"a": "1"}) == {"a": "1"}
    assert len({FrozenMap({"a": "1"}), FrozenMap([("a", "1")])}) == 1


def test_lease_round_trip_of_micro_times() -> None:
    t = datetime(2026, 1, 1, 0, 0, 1, 250000, tzinfo=UTC)
    spec = lease_spec("me", 15, t, t, 2)
    assert spec["renewTime"] == "2026-01-01T00:00:01.250000Z"
    lease = lease_info({"metadata": {"name": "l", "resourceVersion": "3"}, "spec": spec})
    assert (lease.holder, lease.renew_time, lease.transitions) == ("me", t, 2)
    empty = lease_info({"metadata": {"name": "l"}, "spec": {"renewTime": "garbage"}})
    assert (empty.holder, empty.renew_time, empty.duration_seconds) == (None, None, None)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, errors.Invalid),
        (401, errors.Unauthorized),
        (403, errors.Forbidden),
        (404, errors.NotFound),
        (409, errors.Conflict),
        (410, errors.Gone),
        (422, errors.Invalid),
        (429, errors.Unavailable),
        (500, errors.Unavailable),
        (503, errors.Unavailable),
        (418, errors.KubeError),
    ],
)
def test_server_errors_translate_by_status(code: int, cls: type[errors.KubeError]) -> None:
    response = httpx.Response(
        code, headers={"Retry-After": "2"}, request=httpx.Request("GET", "http://x")
    )
    status = {"kind": "Status", "reason": "Because", "message": "no way"}
    error = errors.translate(
        kr8s.ServerError("no way", status, response),  # type: ignore[arg-type]  # kr8s passes dicts
        "get pods ns/p",
    )
    assert type(error) is cls
    assert error.status == code and error.reason == "Because" and error.retry_after == 2.0
    assert str(error) == "get pods ns/p: no way"


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("incomplete chunked read"),
        httpx.ReadTimeout("slow"),
        kr8s.APITimeoutError("slow"),
        TimeoutError(),
        ConnectionResetError(),
    ],
)
def test_transport_failures_are_unavailable(exc: Exception) -> None:
    assert type(errors.translate(exc, "watch pods ns")) is errors.Unavailable


def test_other_failures_are_plain_kube_errors() -> None:
    assert type(errors.translate(ValueError("Unable to find valid credentials"), "c")) is (
        errors.KubeError
    )
    assert type(errors.translate(FileNotFoundError("kubeconfig"), "c")) is errors.KubeError
