"""Fixtures: a sandbox API server on a free port, its kubeconfig, a kr8s client, a workload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import kr8s
import pytest
from kr8s._api import Api as _KrApi

from controller.sandbox.apiserver import ApiServer
from controller.sandbox.store import Store
from controller.sandbox.workload import NullPodRuntime, Workload

Obj = dict[str, Any]


@pytest.fixture(autouse=True)
def _clear_kr8s_cache() -> Iterator[None]:
    """kr8s caches Api objects per event loop; a stale one would point at a stopped server."""
    _KrApi._instances.clear()
    yield
    _KrApi._instances.clear()


@pytest.fixture
async def api_server() -> AsyncIterator[ApiServer]:
    """A running sandbox API server on 127.0.0.1 and a free port."""
    server = ApiServer(seed=1)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def kubeconfig(api_server: ApiServer, tmp_path: Path) -> Path:
    """A kubeconfig for the sandbox (no token: anonymous, allowed everything)."""
    return api_server.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[Any]:
    """A kr8s async Api bound to the sandbox, closed afterwards."""
    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
    try:
        yield api
    finally:
        if api._session is not None:
            await api._session.aclose()


@pytest.fixture
def runtime() -> NullPodRuntime:
    """The default pod runtime (loopback IPs, serves nothing)."""
    return NullPodRuntime()


@pytest.fixture
async def workload(api_server: ApiServer, runtime: NullPodRuntime) -> AsyncIterator[Workload]:
    """A workload simulator with fast timings, stopped before the server."""
    sim = Workload(api_server.registry, runtime, ready_delay=0.05, termination_grace=0.05)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def wait_until(store: Store, condition: Callable[[], bool], limit: float = 3.0) -> None:
    """Re-check ``condition`` on every store write until it holds; fail after ``limit`` s.

    Also re-checks every 20 ms, for conditions on state outside the store (the pod runtime).
    """
    watch = store.watch(None, cuttable=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    try:
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"condition not met within {limit}s")
            await watch.next(min(remaining, 0.02))
    finally:
        watch.close()


def deployment(name: str, replicas: int = 1, version: str = "v1", app: str = "web") -> Obj:
    """A minimal valid apps/v1 Deployment."""
    labels = {"app": app, "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "proxy",
                            "image": f"zai-proxy:{version}",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [{"name": "DEPLOYMENT_VARIANT", "value": version}],
                        }
                    ]
                },
            },
        },
    }


def service(name: str = "web", selector: dict[str, str] | None = None) -> Obj:
    """A minimal ClusterIP Service."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": selector if selector is not None else {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
