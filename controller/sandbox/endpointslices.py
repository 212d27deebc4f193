"""The EndpointSlice controller of the sandbox: one managed slice per Service with a selector.

Mirrors ``pkg/controller/endpointslice`` for what clients observe: the slice is labelled
``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by``, owned by the
Service, ``addressType: IPv4``, ports carry the *target* (pod) port, and every pod the selector
matches that has an IP is an endpoint with ``ready`` (Ready and not terminating), ``serving``
(Ready) and ``terminating`` conditions and a ``targetRef`` to the pod. A Service whose pods are
all gone keeps an empty placeholder slice with ``endpoints: null``, as the real controller does.

Lookups go through store indexes (pods by label, Services by selector label, slices by Service),
so one pod event costs the Services that select it, not every Service of the namespace.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from controller.sandbox import apierrors as errors
from controller.sandbox.kinds import ENDPOINTSLICES, PODS, SERVICES
from controller.sandbox.registry import Registry
from controller.sandbox.selectors import selector_from_map

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"

POD_LABELS = "labels"  # (namespace, key, value) of each pod label
SERVICE_SELECTOR = "selector"  # (namespace, key, value) of each Service selector entry
SLICE_SERVICE = "service"  # (namespace, service-name label) of each slice, managed or not


def _label_pairs(obj: Obj) -> Iterable[Hashable]:
    ns = obj["metadata"].get("namespace", "")
    return [(ns, k, v) for k, v in (obj["metadata"].get("labels") or {}).items()]


def _selector_pairs(svc: Obj) -> Iterable[Hashable]:
    ns = svc["metadata"].get("namespace", "")
    return [(ns, k, v) for k, v in ((svc.get("spec") or {}).get("selector") or {}).items()]


def _slice_service(slice_: Obj) -> Iterable[Hashable]:
    labels = slice_["metadata"].get("labels") or {}
    if SERVICE_NAME_LABEL not in labels:
        return []
    return [(slice_["metadata"].get("namespace", ""), labels[SERVICE_NAME_LABEL])]


def pod_ready(pod: Obj) -> bool:
    """Whether the pod's Ready condition is True."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _target_port(service_port: Obj, pods: list[Obj]) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    for pod in pods:
        for c in (pod.get("spec") or {}).get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("name") == target:
                    return int(p["containerPort"])
    return None


class EndpointSliceController:
    """Keeps each selector Service's managed EndpointSlice equal to its matching pods."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        store = registry.store
        store.add_index(PODS.key, POD_LABELS, _label_pairs)
        store.add_index(SERVICES.key, SERVICE_SELECTOR, _selector_pairs)
        store.add_index(ENDPOINTSLICES.key, SLICE_SERVICE, _slice_service)
        # the pods each Service's slice lists: a pod whose labels stop matching must still
        # bring its old Service's slice up to date, and a watch event carries only the new labels
        self._members: dict[tuple[str, str], set[str]] = {}
        self._member_of: dict[tuple[str, str], set[str]] = {}

    def slices(self, namespace: str, service: str) -> list[Obj]:
        """Every slice labelled with the Service's name (what kube-proxy reads)."""
        return self.registry.store.by_index(ENDPOINTSLICES.key, SLICE_SERVICE, (namespace, service))

    def managed_slices(self, namespace: str, service: str) -> list[Obj]:
        """Slices this controller owns for a Service."""
        return [
            s
            for s in self.slices(namespace, service)
            if (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
        ]

    def services_of_pod(self, pod: Obj) -> set[tuple[str, str]]:
        """(namespace, name) of the Services whose slice a change of ``pod`` may alter."""
        meta = pod["metadata"]
        ns, labels = meta.get("namespace", ""), meta.get("labels") or {}
        out = {(ns, name) for name in self._member_of.get((ns, meta["name"]), ())}
        store = self.registry.store
        for pair in _label_pairs(pod):
            for svc in store.by_index(SERVICES.key, SERVICE_SELECTOR, pair):
                if selector_from_map(svc["spec"]["selector"]).matches(labels):
                    out.add((ns, svc["metadata"]["name"]))
        return out

    def _remember(self, namespace: str, service: str, pods: set[str]) -> None:
        old = self._members.pop((namespace, service), set())
        for name in old - pods:
            services = self._member_of.get((namespace, name))
            if services is not None:
                services.discard(service)
                if not services:
                    del self._member_of[(namespace, name)]
        for name in pods - old:
            self._member_of.setdefault((namespace, name), set()).add(service)
        if pods:
            self._members[(namespace, service)] = pods

    def sync(self, namespace: str, service: str) -> None:
        """Create, update or delete the managed slice of one Service."""
        svc = self.registry.store.get(SERVICES.key, namespace, service)
        existing = self.managed_slices(namespace, service)
        spec = (svc or {}).get("spec") or {}
        if svc is None or not spec.get("selector") or spec.get("type") == "ExternalName":
            self._remember(namespace, service, set())
            for s in existing:
                self._delete(namespace, s["metadata"]["name"])
            return
        desired = self._desired(svc)
        self._remember(
            namespace,
            service,
            {e["targetRef"]["name"] for e in desired["endpoints"] or ()},
        )
        if not existing:
            self.registry.create(ENDPOINTSLICES, namespace, desired)
            return
        keep, extra = existing[0], existing[1:]
        for s in extra:
            self._delete(namespace, s["metadata"]["name"])
        updated = dict(keep)
        updated["metadata"] = {
            **keep["metadata"],
            "labels": desired["metadata"]["labels"],
            "ownerReferences": desired["metadata"]["ownerReferences"],
        }
        for field in ("addressType", "endpoints", "ports"):
            updated[field] = desired[field]
        self.registry.update(ENDPOINTSLICES, namespace, keep["metadata"]["name"], updated)

    def _delete(self, namespace: str, name: str) -> None:
        try:
            self.registry.delete(ENDPOINTSLICES, namespace, name)
        except errors.ApiError as e:
            if e.code != 404:
                raise

    def _desired(self, svc: Obj) -> Obj:
        meta = svc["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        spec = svc["spec"]
        selector = selector_from_map(spec["selector"])
        # every selected pod carries the selector's first label: start from those
        first = min(spec["selector"].items())
        pods = [
            p
            for p in self.registry.store.by_index(PODS.key, POD_LABELS, (namespace, *first))
            if selector.matches(p["metadata"].get("labels"))
            and (p.get("status") or {}).get("podIP")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        endpoints = []
        for pod in pods:
            terminating = "deletionTimestamp" in pod["metadata"]
            ready = pod_ready(pod)
            endpoint: Obj = {
                "addresses": [pod["status"]["podIP"]],
                "conditions": {
                    "ready": publish_not_ready or (ready and not terminating),
                    "serving": publish_not_ready or ready,
                    "terminating": terminating,
                },
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }
            if pod["spec"].get("nodeName"):
                endpoint["nodeName"] = pod["spec"]["nodeName"]
            endpoints.append(endpoint)
        ports = []
        for sp in spec.get("ports") or []:
            port = _target_port(sp, pods)
            if port is not None:
                ports.append(
                    {
                        "name": sp.get("name", ""),
                        "port": port,
                        "protocol": sp.get("protocol", "TCP"),
                    }
                )
        labels = {
            k: v
            for k, v in (meta.get("labels") or {}).items()
            if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)
        }
        labels.update({SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY})
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{name}-",
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": name,
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "addressType": "IPv4",
            "endpoints": endpoints or None,
            "ports": ports or None,
        }
