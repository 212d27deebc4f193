"""Frozen views of the Kubernetes objects the controller reads, and their parsers (pure).

Each ``*_info(raw)`` function turns one API object (a JSON dict) into its dataclass; nothing
else in the controller sees raw dicts. Missing optional fields get the defaults the API server
itself implies (``spec.replicas`` 1, absent status counters 0, nil endpoint conditions as
documented for ``discovery.k8s.io/v1``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.core.prestop import PreStopHook, pre_stop_hook

Obj = dict[str, Any]

TEMPLATE_HASH_LABEL = "pod-template-hash"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class FrozenMap(Mapping[str, str]):
    """An immutable, hashable string map (labels, selectors, annotations, env)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, str] = dict(items)

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)


def _frozen(value: Any) -> FrozenMap:
    """A read-only copy of a string map; anything else (None, junk) is empty."""
    if not isinstance(value, Mapping):
        return FrozenMap()
    return FrozenMap({str(k): str(v) for k, v in value.items() if v is not None})


def _meta(raw: Obj) -> Obj:
    meta = raw.get("metadata")
    return meta if isinstance(meta, dict) else {}


@dataclass(frozen=True)
class ObjectRef:
    """Identifies an object an Event is about."""

    kind: str
    namespace: str
    name: str
    uid: str | None = None
    api_version: str = "v1"


@dataclass(frozen=True)
class PodInfo:
    """A Pod as the controller sees it."""

    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    ready: bool
    terminating: bool
    ip: str | None
    deployment: str | None
    container_ports: tuple[int, ...]
    resource_version: str = field(default="", compare=False)
    # When its containers (last) started: a young process may not expose every metric yet.
    started_at: datetime | None = None

    def ref(self) -> ObjectRef:
        """This pod as an Event's involved object."""
        return ObjectRef("Pod", self.namespace, self.name, self.uid)


@dataclass(frozen=True)
class ContainerInfo:
    """What a pod template says about one container's serving and shutdown."""

    name: str
    ports: tuple[int, ...] = ()
    pre_stop: PreStopHook | None = None


@dataclass(frozen=True)
class DeploymentInfo:
    """A Deployment's spec and status counters."""

    namespace: str
    name: str
    uid: str
    spec_replicas: int
    ready_replicas: int
    selector: Mapping[str, str]
    template_labels: Mapping[str, str]
    template_env: Mapping[str, str]
    generation: int
    observed_generation: int
    replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    containers: tuple[ContainerInfo, ...] = ()
    termination_grace_seconds: int = 30  # the API server's default
    resource_version: str = field(default="", compare=False)

    @property
    def rolled_out(self) -> bool:
        """The controller has seen the latest spec and every wanted replica is Ready."""
        return (
            self.observed_generation >= self.generation
            and self.ready_replicas == self.spec_replicas
            and self.replicas == self.spec_replicas
        )

    def ref(self) -> ObjectRef:
        """This Deployment as an Event's involved object."""
        return ObjectRef("Deployment", self.namespace, self.name, self.uid, "apps/v1")


@dataclass(frozen=True)
class ServiceInfo:
    """A Service's selector and annotations at one resourceVersion."""

    namespace: str
    name: str
    uid: str
    selector: Mapping[str, str]
    annotations: Mapping[str, str]
    resource_version: str

    def ref(self) -> ObjectRef:
        """This Service as an Event's involved object."""
        return ObjectRef("Service", self.namespace, self.name, self.uid)


@dataclass(frozen=True)
class EndpointInfo:
    """One endpoint of an EndpointSlice."""

    ip: str
    ready: bool
    serving: bool
    terminating: bool
    pod: str | None


@dataclass(frozen=True)
class EndpointSliceInfo:
    """An EndpointSlice of a Service (label ``kubernetes.io/service-name``)."""

    namespace: str
    name: str
    service: str
    endpoints: tuple[EndpointInfo, ...]
    resource_version: str = field(default="", compare=False)


@dataclass(frozen=True)
class LeaseInfo:
    """A coordination.k8s.io/v1 Lease, as leader election reads and writes it."""

    namespace: str
    name: str
    holder: str | None
    acquire_time: datetime | None
    renew_time: datetime | None
    duration_seconds: int | None
    transitions: int
    resource_version: str


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def pod_info(raw: Obj) -> PodInfo:
    """Parse a v1 Pod."""
    meta = _meta(raw)
    status = raw.get("status") or {}
    labels = _frozen(meta.get("labels"))
    terminating = meta.get("deletionTimestamp") is not None
    ready_condition = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    ports = tuple(
        p["containerPort"]
        for c in (raw.get("spec") or {}).get("containers") or []
        for p in c.get("ports") or []
        if isinstance(p.get("containerPort"), int)
    )
    return PodInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        labels=labels,
        ready=ready_condition and not terminating,
        terminating=terminating,
        ip=status.get("podIP") or None,
        deployment=_deployment_of(meta, labels),
        container_ports=ports,
        resource_version=meta.get("resourceVersion", ""),
        started_at=_started_at(status),
    )


def _started_at(status: Obj) -> datetime | None:
    """The latest running container's start (a restart resets it), else the pod's startTime."""
    known: list[datetime] = []
    for container in status.get("containerStatuses") or []:
        state = container.get("state") if isinstance(container, dict) else None
        running = state.get("running") if isinstance(state, dict) else None
        started = parse_time(running.get("startedAt")) if isinstance(running, dict) else None
        if started is not None:
            known.append(started)
    return max(known) if known else parse_time(status.get("startTime"))


def _deployment_of(meta: Obj, labels: Mapping[str, str]) -> str | None:
    """``<deployment>`` from a controlling ReplicaSet owner named ``<deployment>-<hash>``."""
    pod_hash = labels.get(TEMPLATE_HASH_LABEL)
    if not pod_hash:
        return None
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") != "ReplicaSet" or not ref.get("controller"):
            continue
        name = str(ref.get("name", ""))
        suffix = f"-{pod_hash}"
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    # a ReplicaSet not named after a Deployment (or created by hand) has no Deployment
    return None


@dataclass(frozen=True)
class AutoscalerInfo:
    """A HorizontalPodAutoscaler: what it scales and within which bounds."""

    name: str
    target_kind: str
    target_name: str
    min_replicas: int
    max_replicas: int


def autoscaler_info(raw: Obj) -> AutoscalerInfo:
    """Parse an autoscaling/v2 (or v1) HorizontalPodAutoscaler."""
    spec = raw.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    return AutoscalerInfo(
        name=str(_meta(raw).get("name", "")),
        target_kind=str(ref.get("kind", "")),
        target_name=str(ref.get("name", "")),
        min_replicas=low if isinstance(low, int) else 1,
        max_replicas=high if isinstance(high, int) else 0,
    )


def deployment_info(raw: Obj) -> DeploymentInfo:
    """Parse an apps/v1 Deployment."""
    meta = _meta(raw)
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    template = spec.get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    env = (containers[0].get("env") or []) if containers else []
    replicas = spec.get("replicas")
    return DeploymentInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        # the API server defaults a missing spec.replicas to 1
        spec_replicas=_int(replicas, 1) if replicas is not None else 1,
        ready_replicas=_int(status.get("readyReplicas")),
        selector=_frozen((spec.get("selector") or {}).get("matchLabels")),
        template_labels=_frozen((template.get("metadata") or {}).get("labels")),
        # valueFrom entries have no literal value to report
        template_env=_frozen({e["name"]: e["value"] for e in env if "value" in e and "name" in e}),
        generation=_int(meta.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
        replicas=_int(status.get("replicas")),
        updated_replicas=_int(status.get("updatedReplicas")),
        available_replicas=_int(status.get("availableReplicas")),
        containers=tuple(container_info(c) for c in containers if isinstance(c, dict)),
        termination_grace_seconds=_int(
            (template.get("spec") or {}).get("terminationGracePeriodSeconds"), 30
        ),
        resource_version=meta.get("resourceVersion", ""),
    )


def container_info(raw: Obj) -> ContainerInfo:
    """Parse one entry of a pod template's ``containers``."""
    ports = tuple(
        p["containerPort"]
        for p in raw.get("ports") or []
        if isinstance(p, dict) and isinstance(p.get("containerPort"), int)
    )
    return ContainerInfo(str(raw.get("name", "")), ports, pre_stop_hook(raw))


def service_info(raw: Obj) -> ServiceInfo:
    """Parse a v1 Service."""
    meta = _meta(raw)
    return ServiceInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        selector=_frozen((raw.get("spec") or {}).get("selector")),
        annotations=_frozen(meta.get("annotations")),
        resource_version=meta.get("resourceVersion", ""),
    )


def _condition(conditions: Obj, name: str, default: bool) -> bool:
    value = conditions.get(name)
    return default if value is None else bool(value)


def endpoint_slice_info(raw: Obj) -> EndpointSliceInfo:
    """Parse a discovery.k8s.io/v1 EndpointSlice (nil conditions read as documented)."""
    meta = _meta(raw)
    endpoints = []
    for ep in raw.get("endpoints") or []:
        addresses = ep.get("addresses") or []
        if not addresses:
            continue
        conditions = ep.get("conditions") or {}
        ready = _condition(conditions, "ready", True)
        target = ep.get("targetRef") or {}
        endpoints.append(
            EndpointInfo(
                ip=str(addresses[0]),
                ready=ready,
                serving=_condition(conditions, "serving", ready),
                terminating=_condition(conditions, "terminating", False),
                pod=target.get("name") if target.get("kind") == "Pod" else None,
            )
        )
    return EndpointSliceInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        service=_frozen(meta.get("labels")).get(SERVICE_NAME_LABEL, ""),
        endpoints=tuple(endpoints),
        resource_version=meta.get("resourceVersion", ""),
    )


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 (Micro)Time string as an aware UTC datetime; None when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_micro_time(value: datetime) -> str:
    """A datetime as a Kubernetes MicroTime (``2026-01-01T00:00:00.000000Z``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_time(value: datetime) -> str:
    """A datetime as a Kubernetes Time (seconds precision, ``Z``)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lease_info(raw: Obj) -> LeaseInfo:
    """Parse a coordination.k8s.io/v1 Lease."""
    meta = _meta(raw)
    spec = raw.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    return LeaseInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        holder=spec.get("holderIdentity") or None,
        acquire_time=parse_time(spec.get("acquireTime")),
        renew_time=parse_time(spec.get("renewTime")),
        duration_seconds=_int(duration) if duration is not None else None,
        transitions=_int(spec.get("leaseTransitions")),
        resource_version=meta.get("resourceVersion", ""),
    )


def lease_spec(
    holder: str | None,
    duration_seconds: int | None,
    acquire_time: datetime | None,
    renew_time: datetime | None,
    transitions: int,
) -> Obj:
    """The ``spec`` of a Lease as the API expects it (absent fields omitted)."""
    spec: Obj = {"leaseTransitions": transitions}
    if holder:
        spec["holderIdentity"] = holder
    if duration_seconds is not None:
        spec["leaseDurationSeconds"] = duration_seconds
    if acquire_time is not None:
        spec["acquireTime"] = format_micro_time(acquire_time)
    if renew_time is not None:
        spec["renewTime"] = format_micro_time(renew_time)
    return spec
