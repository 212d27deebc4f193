"""The benches' fleet: N Services with a stable and a canary Deployment each, and their rollouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.common import STATE_ANNOTATION
from controller.sandbox.apiserver import ApiServer
from controller.sandbox.rollouts import bad_gateway_ratio, rate_limited_ratio, zai_proxy_rollout
from controller.sandbox.scenarios import deployment
from controller.sandbox.world import Sandbox
from tests.e2e.harness import state_view


@dataclass(frozen=True)
class FleetMember:
    namespace: str
    service: str
    stable: str
    canary: str


def fleet_names(i: int, namespace: str) -> FleetMember:
    return FleetMember(namespace, f"svc-{i:04d}", f"app-{i:04d}", f"app-{i:04d}-v2")


def create_fleet(
    sandbox: Sandbox, indices: Iterable[int], namespace: str = "fleet", stable_replicas: int = 1
) -> list[FleetMember]:
    """Services with a stable (unlabelled) and a canary (version v2) Deployment each.

    The same shape as the seed's zai-proxy (shared selector `app`, stable without a version
    label), one pod per Deployment by default, canary at 0 until a rollout scales it.
    """
    members = []
    for i in indices:
        m = fleet_names(i, namespace)
        sandbox.api.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": m.service,
                    "namespace": namespace,
                    "labels": {"app": m.stable},
                },
                "spec": {
                    "selector": {"app": m.stable},
                    "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
                },
            }
        )
        env = {"DEPLOYMENT_VARIANT": "production", "RATE_LIMIT_INITIAL": "500"}
        sandbox.api.create(
            deployment(
                m.stable,
                namespace,
                {"app": m.stable},
                stable_replicas,
                "ronaldraygun/zai-proxy:1.1.0",
                env,
            )
        )
        sandbox.api.create(
            deployment(
                m.canary,
                namespace,
                {"app": m.stable, "version": "v2"},
                0,
                "ronaldraygun/zai-proxy:1.3.0",
                {**env, "DEPLOYMENT_VARIANT": "v2"},
            )
        )
        members.append(m)
    return members


async def wait_fleet_ready(
    sandbox: Sandbox, members: Sequence[FleetMember], replicas: int, timeout: float
) -> None:
    """Wait until every member's stable Deployment has `replicas` Ready pods (in-process)."""
    deadline = time.monotonic() + timeout
    pending = list(members)
    while pending:
        pending = [
            m
            for m in pending
            if (sandbox.api.get("deployments", m.stable, m.namespace).get("status") or {}).get(
                "readyReplicas", 0
            )
            != replicas
        ]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} stable Deployments not Ready after {timeout}s")
        await asyncio.sleep(0.2)


# Three metrics per rollout: a ratio, a ratio compared against stable, a gauge.
def fleet_metrics(window_for: str = "30s") -> list[dict[str, Any]]:
    return [
        bad_gateway_ratio(for_=window_for),
        rate_limited_ratio(for_=window_for),
        {
            "name": "rate-limit",
            "gauge": {"metric": "zai_proxy_rate_limit_requests_per_second", "aggregate": "sum"},
            "min": 1,
        },
    ]


def fleet_spec(m: FleetMember, *, interval: str = "10s", hold: str = "2h") -> dict[str, Any]:
    """A rollout that reaches its first step and then stays there (a long hold)."""
    spec = zai_proxy_rollout(
        name=m.service,
        namespace=m.namespace,
        service=m.service,
        sharedSelector={"app": m.stable},
        stable={"deployment": m.stable},
        canary={"deployment": m.canary, "version": "v2"},
        replicas=1,
        steps=[{"weight": 50, "hold": hold}, {"weight": 100, "hold": hold}],
        analysis={
            "interval": interval,
            "window": "1m",
            "minRequests": 5,
            "maxHold": "24h",
            "onInconclusive": "hold",
            "onError": "hold",
            "metrics": fleet_metrics(),
        },
    )
    spec["preflight"]["probe"] = True
    return spec


_SERVICES = ApiServer.resource("services").key


def state_of(sandbox: Sandbox, namespace: str, service: str) -> dict[str, Any] | None:
    """The rollout state on the Service as the tests read it (`harness.state_view`: state v1
    and v2 alike; "step reached" is a `hold` record); KeyError without the Service.

    Read from the sandbox's store, not copied out through the API helpers: the scale bench
    polls every rollout each second, and deep copies of 1000 Services showed up as 5 % of
    the sandbox's CPU, which the bench reports as the sandbox's own.
    """
    svc = sandbox.api.store.get(_SERVICES, namespace, service)
    if svc is None:
        raise KeyError(f"no Service {namespace}/{service}")
    raw = (svc["metadata"].get("annotations") or {}).get(STATE_ANNOTATION)
    return state_view(raw) if raw else None
