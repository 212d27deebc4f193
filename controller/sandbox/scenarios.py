"""Scenarios: the worlds `ptc sandbox --scenario` and the tests set up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from controller.sandbox.world import Sandbox

NAMESPACE = "devpod"


def deployment(
    name: str,
    namespace: str,
    labels: dict[str, str],
    replicas: int,
    image: str,
    env: dict[str, str],
    *,
    selector: dict[str, str] | None = None,
    pre_stop_seconds: int | None = None,
) -> dict[str, Any]:
    """A Deployment manifest for a zai-proxy-like container on port 8080.

    With `pre_stop_seconds`, the container gets the preStop sleep the README recommends.
    """
    container: dict[str, Any] = {
        "name": "zai-proxy",
        "image": image,
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
    }
    if pre_stop_seconds is not None:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": pre_stop_seconds}}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(selector or labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [container]},
            },
        },
    }


@dataclass(frozen=True)
class ZaiProxyScenario:
    """What `zai_proxy_scenario` created."""

    namespace: str
    service: str
    stable: str
    canary: str


async def zai_proxy_scenario(
    sandbox: Sandbox,
    *,
    stable_replicas: int = 4,
    canary_replicas: int = 0,
    canary_rate_limit_initial: float = 10.0,
    stable_rate_limit_initial: float = 10.0,
    namespace: str = NAMESPACE,
    canary_env: dict[str, str] | None = None,
    pre_stop_seconds: int | None = None,
    quiet_canary: bool = False,
) -> ZaiProxyScenario:
    """The seed's world: Service `zai-proxy` (app: zai-proxy), v1 without a version label, v2.

    As in the seed, v1's own selector is `app: zai-proxy`, which also matches v2's pods (the
    overlap the preflight warns about). Traffic is routed through the Service. v2's limiter
    starts at the proxy's own default of 10 req/s; the seed's cold start (RATE_LIMIT_INITIAL=2)
    is what the capacity-gate scenarios pass in. As in the seed, neither Deployment has a
    preStop hook unless `pre_stop_seconds` gives both a preStop sleep.

    `quiet_canary` is the cluster issue 18 came from: v2 already runs (at least) one Ready pod
    that has served nothing, so its /metrics has none of the lazily created families yet. v1's
    pods carry `version: v1` and the Service is pinned to them, so no request reaches v2 until
    ptc sets the shared selector.
    """
    api = sandbox.api
    stable_labels = {"app": "zai-proxy", **({"version": "v1"} if quiet_canary else {})}
    if quiet_canary:
        canary_replicas = max(canary_replicas, 1)
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "zai-proxy",
                "namespace": namespace,
                "labels": {"app": "zai-proxy"},
            },
            "spec": {
                "selector": dict(stable_labels),
                "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}],
            },
        }
    )
    api.create(
        deployment(
            "zai-proxy",
            namespace,
            stable_labels,
            stable_replicas,
            "ronaldraygun/zai-proxy:1.1.0",
            {
                "DEPLOYMENT_VARIANT": "production",
                "RATE_LIMIT_INITIAL": f"{stable_rate_limit_initial:g}",
                "MAX_WORKERS": "50",
            },
            pre_stop_seconds=pre_stop_seconds,
        )
    )
    api.create(
        deployment(
            "zai-proxy-v2",
            namespace,
            {"app": "zai-proxy", "version": "v2"},
            canary_replicas,
            "ronaldraygun/zai-proxy:1.3.0",
            {
                "DEPLOYMENT_VARIANT": "v2",
                "RATE_LIMIT_INITIAL": f"{canary_rate_limit_initial:g}",
                "MAX_WORKERS": "50",
                **(canary_env or {}),
            },
            pre_stop_seconds=pre_stop_seconds,
        )
    )
    sandbox.route_traffic_to(namespace, "zai-proxy")
    await wait_ready(sandbox, namespace, "zai-proxy", stable_replicas)
    await wait_ready(sandbox, namespace, "zai-proxy-v2", canary_replicas)
    await sandbox.endpoints_propagated()
    return ZaiProxyScenario(namespace, "zai-proxy", "zai-proxy", "zai-proxy-v2")


async def wait_ready(
    sandbox: Sandbox, namespace: str, name: str, replicas: int, timeout: float = 30.0
) -> None:
    """Wait until a Deployment reports `replicas` Ready (in-process; no API traffic)."""
    async with asyncio.timeout(timeout):
        while True:
            status = sandbox.api.get("deployments", name, namespace).get("status") or {}
            if status.get("readyReplicas", 0) == replicas and status.get("replicas", 0) == replicas:
                return
            await asyncio.sleep(0.05)


async def quiet_canary_scenario(sandbox: Sandbox) -> ZaiProxyScenario:
    """The zai-proxy world with v2 at 1 Ready pod that no request has reached yet."""
    return await zai_proxy_scenario(sandbox, quiet_canary=True)


SCENARIOS = {"zai-proxy": zai_proxy_scenario, "zai-proxy-quiet-canary": quiet_canary_scenario}
