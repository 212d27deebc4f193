"""The resource types the sandbox serves and their per-kind rules (pure).

Each :class:`ResourceType` carries what the real registry strategy decides for its kind
(``pkg/registry/<group>/<kind>/strategy.go``): discovery facts, which subresources exist,
whether PUT may create, whether DELETE returns the object, defaulting, validation
(see :mod:`controller.sandbox.validation`), when ``metadata.generation`` is bumped, which fields
a field selector may use and the strategic-merge-patch list keys.

Generation rules (checked against kube's strategies):
- Deployments: 1 on create; +1 when ``spec`` or ``metadata.annotations`` change (annotations
  are copied to ReplicaSets); status and label-only changes do not bump.
- Pods (v1.33+): 1 on create; +1 when ``spec`` changes and on graceful deletion.
- EndpointSlices: 1 on create; +1 when anything outside ``metadata`` (or the labels) changes.
- Services, ConfigMaps, Events, Leases: no generation.

Namespaces are implicit: any namespace name is accepted and ``v1/namespaces`` is not served.
ReplicaSets are not served either; pods point at a ReplicaSet ``<deployment>-<hash>`` that exists
only as a name (see :mod:`controller.sandbox.workload`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.sandbox.patch import ELEMENT, PRIMITIVE, SmpSchema, json_equal

Obj = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def _pod_spec_schema(prefix: tuple[str, ...]) -> dict[tuple[str, ...], str]:
    schema: dict[tuple[str, ...], str] = {}
    for containers in ("containers", "initContainers", "ephemeralContainers"):
        base = (*prefix, containers)
        schema[base] = "name"
        schema[(*base, ELEMENT, "env")] = "name"
        schema[(*base, ELEMENT, "ports")] = "containerPort"
        schema[(*base, ELEMENT, "volumeMounts")] = "mountPath"
        schema[(*base, ELEMENT, "volumeDevices")] = "devicePath"
        schema[(*base, ELEMENT, "resizePolicy")] = "resourceName"
    schema[(*prefix, "volumes")] = "name"
    schema[(*prefix, "imagePullSecrets")] = "name"
    schema[(*prefix, "hostAliases")] = "ip"
    schema[(*prefix, "topologySpreadConstraints")] = "topologyKey"
    return schema


_META_SCHEMA: dict[tuple[str, ...], str] = {
    ("metadata", "ownerReferences"): "uid",
    ("metadata", "finalizers"): PRIMITIVE,
}


@dataclass(frozen=True)
class ResourceType:
    """A served resource: discovery facts plus the registry strategy of its kind."""

    group: str
    version: str
    plural: str
    kind: str
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    create_on_update: bool = False
    returns_deleted_object: bool = False
    tracks_generation: bool = False
    generation_fields: tuple[str, ...] = ("spec",)
    graceful_delete: bool = False
    field_labels: frozenset[str] = META_FIELDS
    smp_schema: SmpSchema = field(default_factory=dict)
    status_keeps: tuple[str, ...] = ("spec",)
    defaulter: Callable[[Obj], None] | None = None

    @property
    def api_version(self) -> str:
        """``apps/v1`` or ``v1``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        """Lower-case kind, as discovery reports ``singularName``."""
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        """(group, plural): identity of the resource in the store."""
        return (self.group, self.plural)

    def discovery(self) -> list[dict[str, Any]]:
        """APIResource entries for this resource and its subresources."""
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": True,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        out = [entry]
        for sub in self.subresources:
            kind = "Scale" if sub == "scale" else self.kind
            sub_entry: dict[str, Any] = {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": True,
                "kind": kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1")
            out.append(sub_entry)
        return out

    def generation_changed(self, new: Obj, old: Obj) -> bool:
        """Whether an update from ``old`` to ``new`` bumps ``metadata.generation``."""
        if not self.tracks_generation:
            return False
        if self.kind == "EndpointSlice":

            def strip(o: Obj) -> Obj:
                return {k: v for k, v in o.items() if k not in ("metadata", "kind", "apiVersion")}

            return not json_equal(strip(new), strip(old)) or not json_equal(
                new["metadata"].get("labels") or {}, old["metadata"].get("labels") or {}
            )
        changed = any(not json_equal(new.get(f), old.get(f)) for f in self.generation_fields)
        if self.kind == "Deployment":
            changed = changed or not json_equal(
                new["metadata"].get("annotations") or {}, old["metadata"].get("annotations") or {}
            )
        return changed


# --- defaulting (the subset of SetDefaults_* the controller can observe) -------------------


def _default_container(c: Obj) -> None:
    image = str(c.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    default_pull = (
        "Always"
        if (":" not in tag or tag.endswith(":latest")) and "@" not in image
        else "IfNotPresent"
    )
    c.setdefault("imagePullPolicy", default_pull)
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def default_pod_spec(spec: Obj) -> None:
    """Defaults the real server fills into a PodSpec."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in spec.get("containers") or []:
        if isinstance(c, dict):
            _default_container(c)


def _default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            if isinstance(ru, dict):
                ru.setdefault("maxUnavailable", "25%")
                ru.setdefault("maxSurge", "25%")
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def _default_pod(obj: Obj) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        default_pod_spec(spec)


def _default_service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])


def _default_lease(obj: Obj) -> None:
    obj.setdefault("spec", {})


POD_FIELD_LABELS = META_FIELDS | {
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
}
EVENT_FIELD_LABELS = META_FIELDS | {
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
}
EVENTS_V1_FIELD_LABELS = META_FIELDS | {
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "type",
}

DEPLOYMENTS = ResourceType(
    "apps",
    "v1",
    "deployments",
    "Deployment",
    short_names=("deploy",),
    subresources=("scale", "status"),
    tracks_generation=True,
    smp_schema={
        **_META_SCHEMA,
        **_pod_spec_schema(("spec", "template", "spec")),
        ("status", "conditions"): "type",
    },
    status_keeps=("spec", "metadata.labels"),
    defaulter=_default_deployment,
)
PODS = ResourceType(
    "",
    "v1",
    "pods",
    "Pod",
    short_names=("po",),
    subresources=("status",),
    returns_deleted_object=True,
    tracks_generation=True,
    graceful_delete=True,
    field_labels=POD_FIELD_LABELS,
    smp_schema={
        **_META_SCHEMA,
        **_pod_spec_schema(("spec",)),
        ("status", "conditions"): "type",
        ("status", "podIPs"): "ip",
    },
    defaulter=_default_pod,
)
SERVICES = ResourceType(
    "",
    "v1",
    "services",
    "Service",
    short_names=("svc",),
    subresources=("status",),
    create_on_update=True,
    returns_deleted_object=True,
    field_labels=META_FIELDS | {"spec.clusterIP", "spec.type"},
    smp_schema={**_META_SCHEMA, ("spec", "ports"): "port"},
    defaulter=_default_service,
)
CONFIGMAPS = ResourceType(
    "", "v1", "configmaps", "ConfigMap", short_names=("cm",), smp_schema=_META_SCHEMA
)
EVENTS = ResourceType(
    "",
    "v1",
    "events",
    "Event",
    short_names=("ev",),
    create_on_update=True,
    field_labels=EVENT_FIELD_LABELS,
    smp_schema=_META_SCHEMA,
)
EVENTS_V1 = ResourceType(
    "events.k8s.io",
    "v1",
    "events",
    "Event",
    short_names=("ev",),
    create_on_update=True,
    field_labels=EVENTS_V1_FIELD_LABELS,
    smp_schema=_META_SCHEMA,
)
ENDPOINTSLICES = ResourceType(
    "discovery.k8s.io",
    "v1",
    "endpointslices",
    "EndpointSlice",
    tracks_generation=True,
    smp_schema=_META_SCHEMA,
)
LEASES = ResourceType(
    "coordination.k8s.io",
    "v1",
    "leases",
    "Lease",
    create_on_update=True,
    smp_schema=_META_SCHEMA,
    defaulter=_default_lease,
)
HPAS = ResourceType(
    "autoscaling",
    "v2",
    "horizontalpodautoscalers",
    "HorizontalPodAutoscaler",
    short_names=("hpa",),
    smp_schema=_META_SCHEMA,
)

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    PODS,
    SERVICES,
    CONFIGMAPS,
    EVENTS,
    DEPLOYMENTS,
    ENDPOINTSLICES,
    LEASES,
    EVENTS_V1,
    HPAS,
)


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    """The served resource for a URL's group/version/plural, or None."""
    for rt in RESOURCE_TYPES:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def group_versions() -> dict[str, list[ResourceType]]:
    """Served resources by group/version (``v1`` for the core group)."""
    out: dict[str, list[ResourceType]] = {}
    for rt in RESOURCE_TYPES:
        out.setdefault(rt.api_version, []).append(rt)
    return out


def _dig(obj: Obj, dotted: str) -> Any:
    node: Any = obj
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def selectable_fields(rt: ResourceType, obj: Obj) -> dict[str, str]:
    """Field-selector values of an object (what ``GetAttrs`` returns for its kind)."""
    out: dict[str, str] = {}
    for name in rt.field_labels:
        value = _dig(obj, name)
        if name == "source" and rt is EVENTS:
            value = _dig(obj, "source.component")
        if name == "reportingComponent":
            value = obj.get("reportingComponent")
        if name == "spec.hostNetwork":
            value = "true" if value else "false"
        out[name] = "" if value is None else str(value)
    return out
