"""Workload simulator: the deployment controller, scheduler, kubelet and EndpointSlice controller.

Runs in the API server's event loop and writes through the same
:class:`~controller.sandbox.registry.Registry` as HTTP clients, so its writes obey the same rules
and produce the same watch events. Usage::

    api = ApiServer(); await api.start()
    workload = Workload(api.registry, runtime=NullPodRuntime(), ready_delay=0.05,
                        termination_grace=0.05)
    await workload.start()
    ...
    await workload.stop()          # stops every pod it started via runtime.stop_pod
    await api.stop()

``Workload(registry, runtime=None, *, ready_delay=0.2, termination_grace=0.2,
node_name="sandbox-node")``; ``ready_delay``/``termination_grace`` may be changed at any time and
``ready_delays[deployment_name]`` overrides the delay per Deployment. Timing uses the event loop
clock (``asyncio.sleep``).

What it simulates:

- **Deployments** own pods through a ReplicaSet ``<deployment>-<pod-template-hash>`` that is
  *not served* as a resource (it exists only as the pods' ``ownerReferences``). Pods are named
  ``<deployment>-<hash>-<5 chars>``, carry the template labels plus ``pod-template-hash``, and
  are created/deleted to match ``spec.replicas``; scale-down deletes not-ready, then newest pods
  first. A template change creates new-hash pods and deletes the old ones once enough new ones
  are Ready (a simplified RollingUpdate with 100% surge). ``status`` (``observedGeneration``,
  ``replicas``, ``updatedReplicas``, ``readyReplicas``, ``availableReplicas``,
  ``unavailableReplicas``, ``Available``/``Progressing`` conditions) is kept true, with zero
  counts omitted like the real ``omitempty`` fields. Deleting a Deployment deletes its pods.
- **Kubelet** (binds, starts, readies and terminates pods through the runtime): see
  :mod:`controller.sandbox.kubelet`.
- **EndpointSlices**: see :mod:`controller.sandbox.endpointslices`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from controller.sandbox import apierrors as errors
from controller.sandbox.endpointslices import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    EndpointSliceController,
    pod_ready,
)
from controller.sandbox.kinds import DEPLOYMENTS, PODS, SERVICES
from controller.sandbox.kubelet import Kubelet, owner_replica_set
from controller.sandbox.registry import NAME_ALPHABET, Registry, rfc3339
from controller.sandbox.store import Watch
from controller.tasks import cancel_and_wait

Obj = dict[str, Any]
log = logging.getLogger(__name__)

TEMPLATE_HASH_LABEL = "pod-template-hash"


class PodRuntime(Protocol):
    async def start_pod(self, pod: dict[str, Any], deployment: str) -> str:
        """Start serving this pod (its containers' ports); return its podIP."""

    async def stop_pod(self, namespace: str, name: str) -> None:
        """Stop serving the pod (called when it is finally removed)."""


class NullPodRuntime:
    """Serves nothing; hands out unique loopback addresses from 127.64.0.0/10."""

    def __init__(self) -> None:
        self._ips: Iterator[ipaddress.IPv4Address] = ipaddress.IPv4Network("127.64.0.0/10").hosts()
        self.running: dict[tuple[str, str], str] = {}

    async def start_pod(self, pod: dict[str, Any], deployment: str) -> str:
        """Record the pod and return a fresh IP."""
        ip = str(next(self._ips))
        self.running[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = ip
        return ip

    async def stop_pod(self, namespace: str, name: str) -> None:
        """Forget the pod."""
        self.running.pop((namespace, name), None)


def template_hash(template: Obj) -> str:
    """``pod-template-hash``: FNV-1a 32 of the template, encoded like ``rand.SafeEncodeString``."""
    import json

    h = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(NAME_ALPHABET[ord(c) % len(NAME_ALPHABET)] for c in str(h))


def replica_set_uid(deployment: Obj, rs_name: str) -> str:
    """Stable uid of the implicit ReplicaSet, so ownership survives without storing it."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{deployment['metadata']['uid']}/{rs_name}"))


def _now() -> str:
    return rfc3339(datetime.now(UTC))


OWNER_DEPLOYMENT = "owner-deployment"  # (namespace, Deployment) of a pod's ReplicaSet owner


def _owner_deployment(pod: Obj) -> list[tuple[str, str]]:
    # a ReplicaSet here is named <deployment>-<pod-template-hash>
    ref = owner_replica_set(pod)
    if ref is None or "-" not in ref["name"]:
        return []
    return [(pod["metadata"].get("namespace", ""), ref["name"].rsplit("-", 1)[0])]


class Workload:
    """Deployment controller + scheduler + kubelet + EndpointSlice controller; see module doc."""

    def __init__(
        self,
        registry: Registry,
        runtime: PodRuntime | None = None,
        *,
        ready_delay: float = 0.2,
        termination_grace: float = 0.2,
        node_name: str = "sandbox-node",
    ) -> None:
        self.registry = registry
        self.store = registry.store
        self.runtime: PodRuntime = runtime or NullPodRuntime()
        self.kubelet = Kubelet(registry, self.runtime, node_name, ready_delay, termination_grace)
        self.endpoints = EndpointSliceController(registry)
        self.store.add_index(PODS.key, OWNER_DEPLOYMENT, _owner_deployment)
        self._watch: Watch | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._seq = 0
        self._created: dict[tuple[str, str], int] = {}

    async def start(self) -> None:
        """Subscribe to the store, reconcile what already exists, then follow events."""
        self._watch = self.store.watch(None, cuttable=False)
        for dep in self.store.list(DEPLOYMENTS.key):
            self._sync_deployment(dep["metadata"]["namespace"], dep["metadata"]["name"])
        for pod in self.store.list(PODS.key):
            self.kubelet.sync_pod(pod)
        for svc in self.store.list(SERVICES.key):
            self.endpoints.sync(svc["metadata"]["namespace"], svc["metadata"]["name"])
        self._loop_task = asyncio.create_task(self._run(), name="sandbox-workload")

    async def stop(self) -> None:
        """Stop reconciling, cancel pod lifecycles, and stop every pod started in the runtime."""
        if self._watch is not None:
            self._watch.close()
        await cancel_and_wait(self._loop_task)
        await self.kubelet.stop()

    @property
    def ready_delay(self) -> float:
        """Seconds from a pod's start to Ready (changeable at any time)."""
        return self.kubelet.ready_delay

    @ready_delay.setter
    def ready_delay(self, value: float) -> None:
        self.kubelet.ready_delay = value

    @property
    def ready_delays(self) -> dict[str, float]:
        """Per-Deployment overrides of :attr:`ready_delay`."""
        return self.kubelet.ready_delays

    @property
    def termination_grace(self) -> float:
        """Seconds from a pod's exit to the removal of its object (capped by its grace period).

        The pod stops answering earlier: at SIGTERM, after its preStop hook (see the kubelet).
        """
        return self.kubelet.termination_grace

    @termination_grace.setter
    def termination_grace(self, value: float) -> None:
        self.kubelet.termination_grace = value

    # --- event loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._watch is not None
        while True:
            first = await self._watch.next()
            if first is None:
                return
            deployments: set[tuple[str, str]] = set()
            services: set[tuple[str, str]] = set()
            for ev_type, obj in [first, *self._watch.drain()]:
                self._note(ev_type, obj, deployments, services)
            for ns, name in sorted(deployments):
                self._guard(self._sync_deployment, ns, name)
            for ns, name in sorted(services):
                self._guard(self.endpoints.sync, ns, name)

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except errors.ApiError as e:
            # a concurrent client write won the race; the event it caused brings us back here
            log.debug("workload sync %s%s failed: %s", getattr(fn, "__name__", fn), args, e.message)

    def _note(
        self,
        ev_type: str,
        obj: Obj,
        deployments: set[tuple[str, str]],
        services: set[tuple[str, str]],
    ) -> None:
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        kind = (obj.get("apiVersion"), obj.get("kind"))
        if kind == ("apps/v1", "Deployment"):
            if ev_type == "DELETED":
                self._collect_garbage(obj)
            else:
                deployments.add((ns, name))
        elif kind == ("v1", "Pod"):
            owner = owner_replica_set(obj)
            if owner is not None:
                deployments.add((ns, owner["name"].rsplit("-", 1)[0]))
            services.update(self.endpoints.services_of_pod(obj))
            if ev_type == "DELETED":
                self._created.pop((ns, name), None)
                self.kubelet.forget(ns, name)
            else:
                self.kubelet.sync_pod(obj)
        elif kind == ("v1", "Service"):
            services.add((ns, name))
        elif kind == ("discovery.k8s.io/v1", "EndpointSlice"):
            labels = meta.get("labels") or {}
            if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and SERVICE_NAME_LABEL in labels:
                services.add((ns, labels[SERVICE_NAME_LABEL]))

    # --- deployment controller --------------------------------------------------------------

    def _owned_pods(self, dep: Obj) -> list[Obj]:
        out = []
        key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
        for pod in self.store.by_index(PODS.key, OWNER_DEPLOYMENT, key):
            ref = owner_replica_set(pod)
            if ref and ref.get("uid") == replica_set_uid(dep, ref["name"]):
                out.append(pod)
        return out

    def _sync_deployment(self, ns: str, name: str) -> None:
        dep = self.store.get(DEPLOYMENTS.key, ns, name)
        if dep is None or "deletionTimestamp" in dep["metadata"]:
            return
        spec = dep["spec"]
        want = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec["template"])
        rs_name = f"{name}-{pod_hash}"
        alive = [p for p in self._owned_pods(dep) if "deletionTimestamp" not in p["metadata"]]
        current = [
            p
            for p in alive
            if (p["metadata"].get("labels") or {}).get(TEMPLATE_HASH_LABEL) == pod_hash
        ]
        old = [p for p in alive if p not in current]
        if len(current) < want:
            for _ in range(want - len(current)):
                self._create_pod(dep, rs_name, pod_hash)
        elif len(current) > want:
            for pod in self._victims(current)[: len(current) - want]:
                self._delete_pod(pod)
        if old and sum(pod_ready(p) for p in current) >= want:
            for pod in old:
                self._delete_pod(pod)
        self._update_status(dep, rs_name, pod_hash)

    def _victims(self, pods: list[Obj]) -> list[Obj]:
        def rank(p: Obj) -> tuple[int, int]:
            key = (p["metadata"]["namespace"], p["metadata"]["name"])
            return (1 if pod_ready(p) else 0, -self._created.get(key, 0))

        return sorted(pods, key=rank)

    def _create_pod(self, dep: Obj, rs_name: str, pod_hash: str) -> None:
        template = dep["spec"]["template"]
        tmeta = template.get("metadata") or {}
        meta: Obj = {
            "generateName": f"{rs_name}-",
            "namespace": dep["metadata"]["namespace"],
            "labels": {**(tmeta.get("labels") or {}), TEMPLATE_HASH_LABEL: pod_hash},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs_name,
                    "uid": replica_set_uid(dep, rs_name),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        spec = copy.deepcopy(template.get("spec") or {})
        spec["nodeName"] = self.kubelet.node_name
        pod = self.registry.create(
            PODS,
            meta["namespace"],
            {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec},
        )
        self._seq += 1
        self._created[(meta["namespace"], pod["metadata"]["name"])] = self._seq

    def _delete_pod(self, pod: Obj) -> None:
        with contextlib.suppress(errors.ApiError):
            self.registry.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _collect_garbage(self, dep: Obj) -> None:
        for pod in self._owned_pods(dep):
            if "deletionTimestamp" not in pod["metadata"]:
                self._delete_pod(pod)

    def _update_status(self, dep: Obj, rs_name: str, pod_hash: str) -> None:
        spec = dep["spec"]
        want = int(spec.get("replicas", 1))
        alive = [p for p in self._owned_pods(dep) if "deletionTimestamp" not in p["metadata"]]
        updated = sum(
            (p["metadata"].get("labels") or {}).get(TEMPLATE_HASH_LABEL) == pod_hash for p in alive
        )
        ready = sum(pod_ready(p) for p in alive)
        counts = {
            "replicas": len(alive),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(want - ready, 0),
        }
        old_status = dep.get("status") or {}
        status: Obj = {"observedGeneration": dep["metadata"].get("generation", 1)}
        status.update({k: v for k, v in counts.items() if v})
        max_unavailable = _resolve_int_or_percent(
            ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%"),
            want,
        )
        available = ready >= want - max_unavailable
        complete = updated == want and ready == want and len(alive) == want
        status["conditions"] = [
            _condition(
                old_status,
                "Available",
                available,
                "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
            ),
            _condition(
                old_status,
                "Progressing",
                True,
                "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" has successfully progressed.'
                if complete
                else f'ReplicaSet "{rs_name}" is progressing.',
            ),
        ]
        new = copy.deepcopy(dep)
        new["status"] = status
        self.registry.update(
            DEPLOYMENTS, dep["metadata"]["namespace"], dep["metadata"]["name"], new, "status"
        )

    # --- kubelet -------------------------------------------------------------------------------


def _resolve_int_or_percent(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return int(total * int(value[:-1]) / 100)
    return int(value)


def _condition(old_status: Obj, ctype: str, ok: bool, reason: str, message: str) -> Obj:
    status = "True" if ok else "False"
    old = next((c for c in old_status.get("conditions") or [] if c.get("type") == ctype), None)
    now = _now()
    same = old is not None and old.get("status") == status
    unchanged = (
        same and old is not None and old.get("reason") == reason and old.get("message") == message
    )
    return {
        "type": ctype,
        "status": status,
        "lastUpdateTime": old["lastUpdateTime"] if unchanged and old else now,
        "lastTransitionTime": old["lastTransitionTime"] if same and old else now,
        "reason": reason,
        "message": message,
    }
