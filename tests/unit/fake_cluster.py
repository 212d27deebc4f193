"""One namespace of a cluster in memory, with watch delivery the test steers, for a reconciler.

The reconciler under test gets real :class:`~controller.shell.kube.Informer`\\ s (over a fake
transport) and a fake :class:`~controller.shell.kube.Kube` whose writes commit here. Every write's
watch echo is delivered in the order ``FakeKube.order`` forces:

- ``before``: the echo is applied by the informer before the write call returns (a real API
  server does this often: the watch connection beats the write's response);
- ``with``: the echo is queued as the write returns; the informer applies it at the next turn
  of the event loop;
- ``after``: the echo (and every later event: one watch stream never reorders) is held until
  the test calls :meth:`FakeCluster.release`.

resourceVersions are opaque and *decrease* with every write, so code that orders them by size
(as numbers or strings) gets every comparison wrong.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.core.objects import deployment_info, endpoint_slice_info, pod_info, service_info
from controller.core.state import COMMAND_ANNOTATION
from controller.shell.kube import (
    Conflict,
    DeploymentInfo,
    Informer,
    KubePolicy,
    NotFound,
    ServiceInfo,
)
from controller.shell.kube.resources import BY_KIND, Resource
from controller.shell.snapshot import Caches

Obj = dict[str, Any]
NS = "devpod"
KINDS = ("pods", "deployments", "services", "endpointslices")
PARSERS = {
    "pods": pod_info,
    "deployments": deployment_info,
    "services": service_info,
    "endpointslices": endpoint_slice_info,
}
# reconnect at once after a 410: the tests wait on the relist, not on a backoff
POLICY = KubePolicy(reconnect_initial=0.001, reconnect_max=0.001, healthy_after=0.0)


async def until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait (bounded) for a condition the informers' tasks make true; checked every loop turn."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {limit}s")
        await asyncio.sleep(0)


class FakeCluster:
    """Objects by kind and name, opaque resourceVersions, and the watch streams of informers."""

    def __init__(self) -> None:
        # ConfigMaps (the decision history) are stored, but no informer watches them
        self.objects: dict[str, dict[str, Obj]] = {kind: {} for kind in (*KINDS, "configmaps")}
        self._writes = 0
        self._streams: dict[str, list[asyncio.Queue[Obj]]] = {
            kind: [] for kind in (*KINDS, "configmaps")
        }
        self.hold = False  # new events wait in `held` (set by an "after" write)
        self.held: list[tuple[str, Obj]] = []
        self.commits: list[tuple[str, str]] = []  # (kind, name) of every write, in order

    def next_version(self) -> str:
        self._writes += 1
        return str(900_000_000 - 7 * self._writes)

    def commit(self, kind: str, obj: Obj, event_type: str = "MODIFIED") -> Obj:
        """Store ``obj`` at a new resourceVersion and send (or hold) its watch event."""
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = self.next_version()
        name = stored["metadata"]["name"]
        self.commits.append((kind, name))
        if event_type == "DELETED":
            self.objects[kind].pop(name, None)
        else:
            event_type = "MODIFIED" if name in self.objects[kind] else "ADDED"
            self.objects[kind][name] = stored
        event = {"type": event_type, "object": copy.deepcopy(stored)}
        if self.hold or self.held:  # behind a held event: a stream never reorders
            self.held.append((kind, event))
        else:
            self._send(kind, event)
        return copy.deepcopy(stored)

    def _send(self, kind: str, event: Obj) -> None:
        for queue in self._streams[kind]:
            queue.put_nowait(event)

    async def release(self, count: int | None = None) -> None:
        """Deliver the first ``count`` held events (all by default), in order, and wait until
        the informers applied them; the rest stay held."""
        count = len(self.held) if count is None else count
        held, self.held = self.held[:count], self.held[count:]
        self.hold = bool(self.held)
        for kind, event in held:
            self._send(kind, event)
        await self.settle()

    async def expire_history(self, *informers: Informer[Any]) -> None:
        """Compact the watch history: held events are lost, open watches end with 410 Gone.

        Returns once each given informer has relisted.
        """
        self.hold = False
        self.held.clear()
        before = [i.stats.relists for i in informers]
        for kind in KINDS:
            self._send(
                kind,
                {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "code": 410,
                        "reason": "Expired",
                        "message": "too old resource version",
                    },
                },
            )
        pairs = list(zip(informers, before, strict=True))
        await until(lambda: all(i.stats.relists > b for i, b in pairs))
        await self.settle()

    async def settle(self) -> None:
        """Return once every informer has taken (and so applied) every event sent so far."""
        await until(lambda: all(q.empty() for qs in self._streams.values() for q in qs))
        await asyncio.sleep(0)

    def write_command(self, kind: str, command_id: str, by: str = "alice") -> Obj:
        """What `ptc <kind>` writes: the command annotation on the Service (not our write)."""
        svc = copy.deepcopy(self.objects["services"]["zai-proxy"])
        svc["metadata"].setdefault("annotations", {})[COMMAND_ANNOTATION] = json.dumps(
            {"kind": kind, "id": command_id, "by": by}
        )
        return self.commit("services", svc)

    def transport(self) -> FakeTransport:
        return FakeTransport(self)


class FakeTransport:
    """The part of :class:`~controller.shell.kube.transport.Transport` an informer uses."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    async def request(self, method: str, resource: Resource, namespace: str, **kwargs: Any) -> Obj:
        assert method == "GET", "informers only list"
        items = list(self.cluster.objects[resource.plural].values())
        version = self.cluster.next_version()
        return {"metadata": {"resourceVersion": version}, "items": copy.deepcopy(items)}

    async def stream(
        self, resource: Resource, namespace: str, params: Mapping[str, str | int], idle: float
    ) -> AsyncGenerator[Obj, None]:
        # Subscribed on the first step, right after the list with no await between: no event
        # falls into a gap (the watch's resourceVersion parameter is not needed here).
        queue: asyncio.Queue[Obj] = asyncio.Queue()
        streams = self.cluster._streams[resource.plural]
        streams.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            streams.remove(queue)

    async def close(self) -> None:
        pass


async def caches_for(cluster: FakeCluster) -> Caches:
    """Started, synced informers of every kind over the cluster."""

    async def open_transport() -> Any:
        return cluster.transport()

    informers = [
        Informer(kind, BY_KIND[kind], NS, PARSERS[kind], open_transport, POLICY) for kind in KINDS
    ]
    for informer in informers:
        await informer.start()
    for informer in informers:
        await informer.wait_synced(5)
    return Caches(*informers)


class FakeKube:
    """The writes a reconciler makes, committed to the cluster with the echo order forced."""

    def __init__(self, cluster: FakeCluster, caches: Caches) -> None:
        self.cluster = cluster
        self.caches = caches
        self.order = "with"
        self.scales: list[tuple[str, int]] = []
        self.service_patches: list[Obj] = []
        self.claims: list[tuple[str, str]] = []  # (kind, name) of each claim annotation written
        self.configmap_writes: list[str] = []  # names, of creates and PUTs
        self.events: list[tuple[str, str, str]] = []

    async def get_service(self, namespace: str, name: str) -> ServiceInfo:
        raw = self.cluster.objects["services"].get(name)
        if raw is None:
            raise NotFound(f"services {name} not found", status=404)
        return service_info(copy.deepcopy(raw))

    async def patch_service(
        self,
        namespace: str,
        name: str,
        *,
        resource_version: str,
        selector: Mapping[str, str] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> ServiceInfo:
        current = self.cluster.objects["services"][name]
        if current["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(f"services {name}: the object has been modified", status=409)
        new = copy.deepcopy(current)
        notes = new["metadata"].setdefault("annotations", {})
        for key, value in (annotations or {}).items():
            if value is None:
                notes.pop(key, None)
            else:
                notes[key] = value
        if selector is not None:
            new["spec"]["selector"] = dict(selector)
        self.service_patches.append(
            {"selector": dict(selector) if selector else None, "annotations": annotations}
        )
        return service_info(await self._write("services", new))

    async def scale(
        self, namespace: str, deployment: str, replicas: int, *, resource_version: str = ""
    ) -> str:
        current = self.cluster.objects["deployments"][deployment]
        if resource_version and current["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(f"deployments {deployment}: the object has been modified", status=409)
        new = copy.deepcopy(current)
        new["spec"]["replicas"] = replicas
        self.scales.append((deployment, replicas))
        stored = await self._write("deployments", new)
        return str(stored["metadata"]["resourceVersion"])

    async def annotate_deployment(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> DeploymentInfo:
        raw = self.cluster.objects["deployments"].get(name)
        if raw is None:
            raise NotFound(f"deployments {name} not found", status=404)
        notes = raw["metadata"].get("annotations") or {}
        if all(notes.get(k) == v for k, v in annotations.items()):
            return deployment_info(copy.deepcopy(raw))  # no change: the same resourceVersion
        new = copy.deepcopy(raw)
        new["metadata"]["annotations"] = {**notes, **annotations}
        new["metadata"]["generation"] = new["metadata"].get("generation", 1) + 1
        self.claims.append(("deployments", name))
        return deployment_info(await self._write("deployments", new))

    async def get_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        raw = self.cluster.objects["configmaps"].get(name)
        if raw is None:
            raise NotFound(f"configmaps {name} not found", status=404)
        return dict(raw["data"]), raw["metadata"]["resourceVersion"]

    async def write_configmap(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        resource_version: str | None,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        current = self.cluster.objects["configmaps"].get(name)
        if current is None and resource_version:
            raise NotFound(f"configmaps {name} not found", status=404)
        if current is not None and current["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(f"configmaps {name}: exists, or modified since", status=409)
        meta = {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {})}
        self.configmap_writes.append(name)
        stored = self.cluster.commit("configmaps", {"metadata": meta, "data": dict(data)})
        return str(stored["metadata"]["resourceVersion"])

    async def annotate_configmap(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> str:
        raw = self.cluster.objects["configmaps"].get(name)
        if raw is None:
            raise NotFound(f"configmaps {name} not found", status=404)
        new = copy.deepcopy(raw)
        new["metadata"]["annotations"] = {**new["metadata"]["annotations"], **annotations}
        self.claims.append(("configmaps", name))
        return str(self.cluster.commit("configmaps", new)["metadata"]["resourceVersion"])

    async def delete_deployment(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        raw = self.cluster.objects["deployments"].get(name)
        if raw is None:
            raise NotFound(f"deployments {name} not found", status=404)
        if uid and raw["metadata"].get("uid") != uid:
            raise Conflict(f"deployments {name}: precondition failed: uid {uid}", status=409)
        await self._write("deployments", raw, "DELETED")

    async def emit_event(self, namespace: str, ref: Any, type_: str, reason: str, msg: str) -> None:
        self.events.append((type_, reason, msg))

    async def _write(self, kind: str, obj: Obj, event_type: str = "MODIFIED") -> Obj:
        if self.order == "after":
            self.cluster.hold = True
        stored = self.cluster.commit(kind, obj, event_type)
        if self.order == "before":
            informer: Informer[Any] = getattr(self.caches, kind)
            name, version = stored["metadata"]["name"], stored["metadata"]["resourceVersion"]
            await until(lambda: informer.delivered(name, version))
        return stored


class SteppedClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def step(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- the world: a Service over two Deployments, pods Ready, one EndpointSlice -------------------


def service(annotations: Mapping[str, str], selector: Mapping[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "zai-proxy",
            "namespace": NS,
            "uid": "svc-uid",
            "annotations": dict(annotations),
        },
        "spec": {"selector": dict(selector or {"app": "zai-proxy"})},
    }


def deployment(name: str, version: str, replicas: int) -> Obj:
    labels = {"app": "zai-proxy", "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "uid": f"{name}-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": []}},
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        },
    }


def pod(deployment_name: str, version: str, index: int, ip: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{deployment_name}-abc-{index}",
            "namespace": NS,
            "uid": f"{deployment_name}-{index}",
            "labels": {"app": "zai-proxy", "version": version, "pod-template-hash": "abc"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": f"{deployment_name}-abc", "controller": True}
            ],
        },
        "spec": {"containers": []},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def endpoint_slice(pods: list[Obj]) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "zai-proxy-1",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": "zai-proxy"},
        },
        "endpoints": [
            {
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": p["metadata"]["name"]},
            }
            for p in pods
        ],
    }


def populate(
    cluster: FakeCluster,
    annotations: Mapping[str, str],
    *,
    stable: int,
    canary: int,
    selector: Mapping[str, str] | None = None,
) -> None:
    """The zai-proxy world: ``stable``/``canary`` Ready pods behind the Service."""
    cluster.commit("services", service(annotations, selector))
    cluster.commit("deployments", deployment("zai-proxy", "v1", stable))
    cluster.commit("deployments", deployment("zai-proxy-v2", "v2", canary))
    pods = [pod("zai-proxy", "v1", i, f"10.0.0.{i + 1}") for i in range(stable)]
    pods += [pod("zai-proxy-v2", "v2", i, f"10.0.1.{i + 1}") for i in range(canary)]
    for p in pods:
        cluster.commit("pods", p)
    cluster.commit("endpointslices", endpoint_slice(pods))
