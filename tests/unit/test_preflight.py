"""Preflight findings (pure): which problems fail the rollout and which only make it wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.core.config import Rollout, load_config
from controller.core.objects import FrozenMap
from controller.sandbox.zaiproxy import ProxyConfig, SimulatedZaiProxy
from controller.shell.kube import DeploymentInfo, PodInfo
from controller.shell.preflight import ProbeAnswer, ProbeTarget, check_world, judge_probe

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SHARED = {"app": "zai-proxy"}


def pack() -> Rollout:
    """The zai-proxy rollout as shipped in config/zai-proxy.yaml."""
    return load_config(REPO / "config" / "zai-proxy.yaml").config.rollout("zai-proxy")


def spec(**preflight: Any) -> Rollout:
    """The pack's rollout with its `preflight` replaced by this one."""
    data = pack().model_dump(by_alias=True, mode="json")
    data["preflight"] = preflight
    return Rollout.model_validate(data)


def fresh_metrics() -> str:
    """What a zai-proxy that has served no request exposes (the simulated one, like the real)."""
    return SimulatedZaiProxy(
        ProxyConfig(variant="v2"), namespace="devpod", name="v2-a", deployment="zai-proxy-v2"
    ).render_metrics()


def served_metrics() -> str:
    now = [0.0]
    proxy = SimulatedZaiProxy(
        ProxyConfig(variant="v2"),
        namespace="devpod",
        name="v2-a",
        deployment="zai-proxy-v2",
        clock=lambda: now[0],
    )
    now[0] += proxy.handle().latency  # counted once answered, like the real proxy
    return proxy.render_metrics()


def target(age: timedelta | None = timedelta(minutes=10)) -> ProbeTarget:
    return ProbeTarget("v2-a", "10.0.0.7", 8080, NOW - age if age is not None else None)


def ok(text: str) -> ProbeAnswer:
    return ProbeAnswer(200, 200, text)


# ---------------------------------------------------------------------------------------------
# Probe answers


def test_the_zai_proxy_pack_passes_a_canary_that_has_served_nothing() -> None:
    found = judge_probe(pack(), target(), ok(fresh_metrics()), NOW)
    assert found.problems == () and found.waiting == ()


def test_the_pack_still_needs_its_at_start_families() -> None:
    text = "\n".join(
        line for line in fresh_metrics().splitlines() if "zai_proxy_max_workers" not in line
    )
    found = judge_probe(pack(), target(), ok(text), NOW)
    assert found.problems == (
        "pod v2-a: /metrics lacks zai_proxy_max_workers 10m after start; a family that appears "
        "only with traffic belongs in preflight.metrics.lazy",
    )


def test_requests_total_required_at_start_waits_on_a_young_pod_and_fails_an_old_one() -> None:
    old_style = spec(expectMetrics=["zai_proxy_requests_total"], startGrace="30s")
    young = judge_probe(old_style, target(timedelta(seconds=5)), ok(fresh_metrics()), NOW)
    assert young.problems == ()
    assert young.waiting == (
        "pod v2-a: /metrics lacks zai_proxy_requests_total yet (pod younger than startGrace 30s)",
    )
    unknown = judge_probe(old_style, target(None), ok(fresh_metrics()), NOW)
    assert unknown.waiting == young.waiting and unknown.problems == ()
    old = judge_probe(old_style, target(timedelta(seconds=31)), ok(fresh_metrics()), NOW)
    assert old.waiting == ()
    assert old.problems and "lacks zai_proxy_requests_total 31s after start" in old.problems[0]
    # Once the pod has served a request, the same config passes.
    served = judge_probe(old_style, target(), ok(served_metrics()), NOW)
    assert served.problems == () and served.waiting == ()


def test_families_are_matched_by_name_not_by_substring() -> None:
    text = served_metrics()
    # The old check looked for the text anywhere: this prefix "matched" requests_total.
    prefix = spec(metrics={"atStart": ["zai_proxy_request"]})
    assert judge_probe(prefix, target(), ok(text), NOW).problems
    # A histogram's family name matches its _bucket/_sum/_count samples.
    histogram = spec(metrics={"atStart": ["zai_proxy_request_duration_seconds"]})
    assert judge_probe(histogram, target(), ok(text), NOW).problems == ()
    # A name only in a HELP text or a label is not a family.
    tricky = '# HELP x mentions zai_proxy_max_workers\nx{n="zai_proxy_max_workers"} 1\n'
    assert judge_probe(pack(), target(), ok(tricky), NOW).problems


@pytest.mark.parametrize(
    ("answer", "kind", "text"),
    [
        (
            ProbeAnswer(error="http://10.0.0.7:8080 did not answer: ClientConnectorError: x"),
            "waiting",
            "pod v2-a: http://10.0.0.7:8080 did not answer: ClientConnectorError: x",
        ),
        (ProbeAnswer(503, 200, "x 1\n"), "waiting", "pod v2-a: /health answered 503"),
        (ProbeAnswer(200, 500), "waiting", "pod v2-a: /metrics answered 500"),
        (ProbeAnswer(404, 200, "x 1\n"), "problems", "pod v2-a: /health answered 404"),
        (ProbeAnswer(200, 401), "problems", "pod v2-a: /metrics answered 401"),
        (
            ProbeAnswer(200, 200, "<html>not metrics</html>"),
            "problems",
            "pod v2-a: /metrics is not Prometheus text: line 1:",
        ),
    ],
)
def test_probe_answers_are_classified(answer: ProbeAnswer, kind: str, text: str) -> None:
    found = judge_probe(pack(), target(), answer, NOW)
    other = "problems" if kind == "waiting" else "waiting"
    assert getattr(found, other) == ()
    assert len(getattr(found, kind)) == 1 and getattr(found, kind)[0].startswith(text)


# ---------------------------------------------------------------------------------------------
# The world: Deployments and Pods


def deployment(name: str, labels: dict[str, str], replicas: int) -> DeploymentInfo:
    return DeploymentInfo(
        "devpod", name, name, replicas, replicas, FrozenMap(labels), FrozenMap(labels),
        FrozenMap(), 1, 1,
    )  # fmt: skip


def pod(name: str, owner: str | None, **kw: Any) -> PodInfo:
    fields: dict[str, Any] = {
        "labels": FrozenMap({"app": "zai-proxy", "version": "v2"}),
        "ready": True,
        "terminating": False,
        "ip": "10.0.0.7",
        "container_ports": (8080,),
        "started_at": NOW - timedelta(minutes=1),
        **kw,
    }
    return PodInfo("devpod", name, name, deployment=owner, **fields)


STABLE = deployment("zai-proxy", {"app": "zai-proxy"}, 4)
CANARY = deployment("zai-proxy-v2", {"app": "zai-proxy", "version": "v2"}, 1)


def test_a_ready_canary_pod_becomes_a_probe_target_with_its_start() -> None:
    found = check_world(pack(), SHARED, STABLE, CANARY, [pod("v2-a", "zai-proxy-v2")])
    assert found.problems == () and found.waiting == ()
    assert found.probe_targets == (
        ProbeTarget("v2-a", "10.0.0.7", 8080, NOW - timedelta(minutes=1)),
    )


@pytest.mark.parametrize(
    ("pods", "stable", "kind", "text"),
    [
        # Time fixes these: wait.
        ([pod("v2-a", "zai-proxy-v2", ready=False)], STABLE, "waiting", "0/1 pods Ready"),
        ([], STABLE, "waiting", "canary zai-proxy-v2: 0/1 pods Ready"),
        ([pod("v2-a", "zai-proxy-v2", ip=None)], STABLE, "waiting", "has no IP yet"),
        (
            [pod("v2-a", "zai-proxy-v2"), pod("old", None, terminating=True, ready=False)],
            STABLE,
            "waiting",
            "terminating pods outside both Deployments still match the shared selector: old",
        ),
        # Time does not: fail.
        (
            [pod("v2-a", "zai-proxy-v2"), pod("debug-shell", None)],
            STABLE,
            "problems",
            "pods outside both Deployments match the shared selector",
        ),
        (
            [pod("v2-a", "zai-proxy-v2", container_ports=())],
            STABLE,
            "problems",
            "declares no container port: set preflight.port",
        ),
        ([], None, "problems", "stable Deployment devpod/zai-proxy not found"),
        (
            [pod("v2-a", "zai-proxy-v2")],
            deployment("zai-proxy", {"app": "other"}, 4),
            "problems",
            "lacks the shared selector labels",
        ),
    ],
)
def test_world_findings_are_classified(
    pods: list[PodInfo], stable: DeploymentInfo | None, kind: str, text: str
) -> None:
    found = check_world(spec(), SHARED, stable, CANARY, pods)
    other = "problems" if kind == "waiting" else "waiting"
    assert any(text in f for f in getattr(found, kind)), found
    assert getattr(found, other) == (), found
