"""Fixtures for the Kubernetes adapter tests: the sandbox, a connected Kube, bounded waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controller.sandbox.apiserver import ApiServer
from controller.sandbox.workload import Workload
from controller.shell.kube import Kube, KubePolicy
from tests.sandbox import conftest as sandbox

# The sandbox's fixtures, re-exported for this directory (pytest finds them by name).
_clear_kr8s_cache = sandbox._clear_kr8s_cache
api_server = sandbox.api_server
kubeconfig = sandbox.kubeconfig
runtime = sandbox.runtime
workload = sandbox.workload
deployment, service, wait_until = sandbox.deployment, sandbox.service, sandbox.wait_until

# Fast everything: tests wait on conditions, never on these numbers.
FAST = KubePolicy(
    timeout=2.0,
    attempts=4,
    backoff_initial=0.01,
    backoff_max=0.05,
    watch_timeout=5,
    watch_idle_grace=2.0,
    reconnect_initial=0.01,
    reconnect_max=0.1,
    healthy_after=0.5,
)


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves adapter tasks (informers) running after its fixtures closed."""
    yield
    current = asyncio.current_task()
    leaked = [
        t
        for t in asyncio.all_tasks()
        if t is not current and not t.done() and t.get_name().startswith("ptc-")
    ]
    assert not leaked, f"leaked tasks: {[t.get_name() for t in leaked]}"


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[Kube]:
    """A Kube connected to the sandbox as an anonymous (all-allowed) user."""
    client = await Kube.connect(str(kubeconfig), policy=FAST)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def world(api_server: ApiServer, workload: Workload) -> ApiServer:
    """Service ``web`` (shared selector app=web) over Deployments ``web`` (v1, 2) and
    ``web-v2`` (v2, 1), all pods Ready."""
    api_server.create(service("web", {"app": "web"}))
    api_server.create(deployment("web", replicas=2, version="v1"))
    api_server.create(deployment("web-v2", replicas=1, version="v2"))
    await wait_until(api_server.store, lambda: ready_pods(api_server, "app=web") == 3)
    return api_server


def ready_pods(api: ApiServer, selector: str) -> int:
    """How many pods matching ``selector`` are Ready (straight from the sandbox store)."""
    return sum(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
        for p in api.list("Pod", label_selector=selector)
        if p.get("status", {}).get("conditions")
    )


async def eventually(condition: Callable[[], Any], limit: float = 3.0) -> None:
    """Wait (bounded) for a condition fed by another task, e.g. an informer's watch.

    Re-checks on every scheduling round trip with a small pause; fails after ``limit`` s.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {limit}s")
        await asyncio.sleep(0.005)
