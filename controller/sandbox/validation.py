"""Object validation for the served kinds: the subset of ``pkg/apis/*/validation`` that matters.

Each function returns a list of :class:`FieldError`; an empty list means valid. The registry turns
a non-empty list into a 422 Invalid Status. Rules here are the ones a controller can trip over:
names, labels, the 256 KiB total of annotations, Deployment replicas/selector/template, immutable
fields, Service ports, Pod spec immutability, container lifecycle hooks, Lease durations,
EndpointSlice address types and events.k8s.io required fields.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from controller.sandbox.apierrors import FieldError
from controller.sandbox.hooks import validate_lifecycle
from controller.sandbox.kinds import ResourceType
from controller.sandbox.patch import json_equal
from controller.sandbox.selectors import (
    SelectorError,
    label_key_errors,
    label_value_errors,
    selector_from_label_selector,
)

Obj = dict[str, Any]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# apimachinery's TotalAnnotationSizeLimitB: keys and values of all annotations, in bytes.
TOTAL_ANNOTATION_SIZE = 256 * 1024


def _invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", detail, value)


def _required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, "FieldValueRequired", detail)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_name(rt: ResourceType, name: Any) -> list[FieldError]:
    """Name rules: DNS-1035 label for Services, DNS-1123 subdomain for the rest."""
    if not isinstance(name, str) or not name:
        return [_required("metadata.name", "name or generateName is required")]
    if rt.kind == "Service":
        if len(name) > 63 or not _DNS_1035.match(name):
            return [
                _invalid(
                    "metadata.name",
                    name,
                    "a DNS-1035 label must consist of lower case alphanumeric "
                    "characters or '-', start with an alphabetic character, and end with an "
                    "alphanumeric character",
                )
            ]
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return [
            _invalid(
                "metadata.name",
                name,
                "a lowercase RFC 1123 subdomain must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        ]
    return []


def _validate_labels(labels: Any, path: str) -> list[FieldError]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [_invalid(path, labels, "must be a map of string keys to string values")]
    errs: list[FieldError] = []
    for k, v in labels.items():
        errs += [_invalid(path, k, e) for e in label_key_errors(k)]
        if not isinstance(v, str):
            errs.append(_invalid(f"{path}", v, "label values must be strings"))
        else:
            errs += [_invalid(path, v, e) for e in label_value_errors(v)]
    return errs


def validate_metadata(rt: ResourceType, obj: Obj) -> list[FieldError]:
    """Common ObjectMeta checks (name, labels, annotations)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [_required("metadata")]
    errs = validate_name(rt, meta.get("name"))
    errs += _validate_labels(meta.get("labels"), "metadata.labels")
    annotations = meta.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
            isinstance(v, str) for v in annotations.values()
        ):
            errs.append(
                _invalid(
                    "metadata.annotations",
                    annotations,
                    "must be a map of string keys to string values",
                )
            )
        else:
            for k in annotations:
                errs += [_invalid("metadata.annotations", k, e) for e in label_key_errors(k)]
            size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
            if size > TOTAL_ANNOTATION_SIZE:
                errs.append(
                    FieldError(
                        "metadata.annotations",
                        "FieldValueTooLong",
                        f"must have at most {TOTAL_ANNOTATION_SIZE} bytes",
                    )
                )
    return errs


def _validate_containers(containers: Any, path: str) -> list[FieldError]:
    if not isinstance(containers, list) or not containers:
        return [_required(path)]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, c in enumerate(containers):
        p = f"{path}[{i}]"
        if not isinstance(c, dict):
            errs.append(_invalid(p, c, "must be an object"))
            continue
        name = c.get("name")
        if not isinstance(name, str) or not name:
            errs.append(_required(f"{p}.name"))
        elif not _DNS_LABEL.match(name) or len(name) > 63:
            errs.append(
                _invalid(
                    f"{p}.name",
                    name,
                    "a lowercase RFC 1123 label must consist of lower case "
                    "alphanumeric characters or '-', and must start and end with an "
                    "alphanumeric character",
                )
            )
        elif name in seen:
            errs.append(FieldError(f"{p}.name", "FieldValueDuplicate", "", name))
        else:
            seen.add(name)
        if not isinstance(c.get("image"), str) or not c.get("image"):
            errs.append(_required(f"{p}.image"))
        for j, port in enumerate(c.get("ports") or []):
            cp = port.get("containerPort") if isinstance(port, dict) else None
            if not _is_int(cp) or not 1 <= cp <= 65535:
                errs.append(
                    _invalid(
                        f"{p}.ports[{j}].containerPort",
                        cp,
                        "must be between 1 and 65535, inclusive",
                    )
                )
        env = c.get("env")
        if env is not None and (
            not isinstance(env, list) or not all(isinstance(e, dict) and e.get("name") for e in env)
        ):
            errs.append(_required(f"{p}.env[].name"))
    return errs


def _validate_pod_spec(spec: Any, path: str) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [_required(path)]
    errs = _validate_containers(spec.get("containers"), f"{path}.containers")
    grace = spec.get("terminationGracePeriodSeconds")
    for i, c in enumerate(spec.get("containers") or []):
        if isinstance(c, dict):
            errs += validate_lifecycle(c, grace, f"{path}.containers[{i}]")
    if grace is not None and (not _is_int(grace) or grace < 0):
        errs.append(
            _invalid(
                f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    return errs


def _validate_deployment(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    errs: list[FieldError] = []
    replicas = spec.get("replicas")
    if not _is_int(replicas):
        errs.append(_invalid("spec.replicas", replicas, "must be an integer"))
    elif replicas < 0:
        errs.append(_invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector_obj = spec.get("selector")
    template = spec.get("template")
    if not isinstance(selector_obj, dict):
        errs.append(_required("spec.selector"))
    else:
        try:
            selector = selector_from_label_selector(selector_obj)
        except SelectorError as e:
            errs.append(_invalid("spec.selector", selector_obj, str(e)))
        else:
            if selector.empty():
                errs.append(
                    _invalid(
                        "spec.selector", selector_obj, "empty selector is invalid for deployment"
                    )
                )
            labels = (
                (template or {}).get("metadata", {}).get("labels")
                if isinstance(template, dict)
                else None
            )
            if not selector.empty() and not selector.matches(
                labels if isinstance(labels, dict) else {}
            ):
                errs.append(
                    _invalid(
                        "spec.template.metadata.labels",
                        labels,
                        "`selector` does not match template `labels`",
                    )
                )
    if not isinstance(template, dict):
        errs.append(_required("spec.template"))
    else:
        errs += _validate_labels(
            (template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels"
        )
        errs += _validate_pod_spec(template.get("spec"), "spec.template.spec")
        restart = (
            (template.get("spec") or {}).get("restartPolicy")
            if isinstance(template.get("spec"), dict)
            else None
        )
        if restart not in (None, "Always"):
            errs.append(
                FieldError(
                    "spec.template.spec.restartPolicy",
                    "FieldValueNotSupported",
                    'supported values: "Always"',
                    restart,
                )
            )
    strategy = (
        (spec.get("strategy") or {}).get("type") if isinstance(spec.get("strategy"), dict) else None
    )
    if strategy not in (None, "RollingUpdate", "Recreate"):
        errs.append(
            FieldError(
                "spec.strategy.type",
                "FieldValueNotSupported",
                'supported values: "Recreate", "RollingUpdate"',
                strategy,
            )
        )
    if old is not None and not json_equal(
        spec.get("selector"), (old.get("spec") or {}).get("selector")
    ):
        errs.append(_invalid("spec.selector", selector_obj, "field is immutable"))
    return errs


def _validate_pod(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = _validate_pod_spec(obj.get("spec"), "spec")
    if old is not None and not errs:

        def mutable_stripped(spec: Obj) -> Obj:
            s = {k: v for k, v in spec.items() if k not in ("activeDeadlineSeconds", "tolerations")}
            s["containers"] = [
                {k: v for k, v in c.items() if k != "image"} for c in s.get("containers", [])
            ]
            return s

        if not json_equal(mutable_stripped(obj["spec"]), mutable_stripped(old.get("spec") or {})):
            errs.append(
                FieldError(
                    "spec",
                    "FieldValueForbidden",
                    "pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                    "`spec.tolerations` (only additions to existing tolerations),"
                    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                    "previously negative)",
                )
            )
    return errs


def _validate_service(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    errs: list[FieldError] = []
    stype = spec.get("type", "ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        errs.append(
            FieldError(
                "spec.type",
                "FieldValueNotSupported",
                'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
                stype,
            )
        )
    ports = spec.get("ports") or []
    if not isinstance(ports, list):
        return [_invalid("spec.ports", ports, "must be a list")]
    if stype != "ExternalName" and spec.get("clusterIP") != "None" and not ports:
        errs.append(_required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            errs.append(_invalid(f"spec.ports[{i}]", port, "must be an object"))
            continue
        p = port.get("port")
        if not _is_int(p) or not 1 <= p <= 65535:
            errs.append(
                _invalid(f"spec.ports[{i}].port", p, "must be between 1 and 65535, inclusive")
            )
        name = port.get("name", "")
        if len(ports) > 1 and not name:
            errs.append(_required(f"spec.ports[{i}].name"))
        elif name in names:
            errs.append(FieldError(f"spec.ports[{i}].name", "FieldValueDuplicate", "", name))
        names.add(name)
    errs += _validate_labels(spec.get("selector"), "spec.selector")
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if old_ip and spec.get("clusterIP") != old_ip:
            errs.append(_invalid("spec.clusterIP", spec.get("clusterIP"), "field is immutable"))
    return errs


def _validate_configmap(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for field in ("data", "binaryData"):
        data = obj.get(field)
        if data is None:
            continue
        if not isinstance(data, dict):
            errs.append(_invalid(field, data, "must be a map"))
            continue
        for k, v in data.items():
            if not _CONFIG_KEY.match(k):
                errs.append(
                    _invalid(
                        field,
                        k,
                        "a valid config key must consist of alphanumeric characters, "
                        "'-', '_' or '.'",
                    )
                )
            if not isinstance(v, str):
                errs.append(_invalid(f"{field}[{k}]", v, "must be a string"))
    return errs


def _validate_lease(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    for field in ("leaseDurationSeconds", "leaseTransitions"):
        value = spec.get(field)
        if value is None:
            continue
        if not _is_int(value):
            errs.append(_invalid(f"spec.{field}", value, "must be an integer"))
        elif field == "leaseDurationSeconds" and value <= 0:
            errs.append(_invalid(f"spec.{field}", value, "must be greater than 0"))
        elif value < 0:
            errs.append(_invalid(f"spec.{field}", value, "must be greater than or equal to 0"))
    return errs


def _validate_endpointslice(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    at = obj.get("addressType")
    if at not in ("IPv4", "IPv6", "FQDN"):
        errs.append(
            FieldError(
                "addressType",
                "FieldValueNotSupported",
                'supported values: "FQDN", "IPv4", "IPv6"',
                at,
            )
        )
    if old is not None and at != old.get("addressType"):
        errs.append(_invalid("addressType", at, "field is immutable"))
    endpoints = obj.get("endpoints")
    if endpoints is not None and not isinstance(endpoints, list):
        errs.append(_invalid("endpoints", endpoints, "must be a list"))
    for i, ep in enumerate(endpoints or []):
        addresses = ep.get("addresses") if isinstance(ep, dict) else None
        if not isinstance(addresses, list) or not 1 <= len(addresses) <= 100:
            errs.append(_required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
    return errs


def _validate_event(obj: Obj, old: Obj | None) -> list[FieldError]:
    ns = obj["metadata"].get("namespace", "")
    involved = obj.get("involvedObject") or {}
    if isinstance(involved, dict) and involved.get("namespace") and involved["namespace"] != ns:
        return [
            _invalid(
                "involvedObject.namespace", involved["namespace"], "does not match event.namespace"
            )
        ]
    return []


def _validate_event_v1(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for field in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(field):
            errs.append(_required(field))
    if obj.get("type") not in ("Normal", "Warning"):
        errs.append(
            FieldError(
                "type",
                "FieldValueNotSupported",
                'supported values: "Normal", "Warning"',
                obj.get("type"),
            )
        )
    regarding = obj.get("regarding") or {}
    ns = obj["metadata"].get("namespace", "")
    if isinstance(regarding, dict) and regarding.get("namespace") and regarding["namespace"] != ns:
        errs.append(
            _invalid(
                "regarding.namespace", regarding["namespace"], "does not match event.namespace"
            )
        )
    return errs


def _validate_hpa(obj: Obj, old: Obj | None) -> list[FieldError]:
    """autoscaling/v2: a scale target, and 1 <= minReplicas <= maxReplicas."""
    errs: list[FieldError] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [_required("spec")]
    ref = spec.get("scaleTargetRef")
    if not isinstance(ref, dict):
        errs.append(_required("spec.scaleTargetRef"))
    else:
        for key in ("kind", "name"):
            if not isinstance(ref.get(key), str) or not ref.get(key):
                errs.append(_required(f"spec.scaleTargetRef.{key}"))
    high = spec.get("maxReplicas")
    if not _is_int(high) or high < 1:
        errs.append(_invalid("spec.maxReplicas", high, "must be greater than or equal to 1"))
    low = spec.get("minReplicas", 1)
    if not _is_int(low) or low < 1:
        errs.append(_invalid("spec.minReplicas", low, "must be greater than or equal to 1"))
    elif _is_int(high) and low > high:
        errs.append(
            _invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`")
        )
    return errs


_VALIDATORS = {
    ("apps", "deployments"): _validate_deployment,
    ("", "pods"): _validate_pod,
    ("", "services"): _validate_service,
    ("", "configmaps"): _validate_configmap,
    ("coordination.k8s.io", "leases"): _validate_lease,
    ("discovery.k8s.io", "endpointslices"): _validate_endpointslice,
    ("", "events"): _validate_event,
    ("events.k8s.io", "events"): _validate_event_v1,
    ("autoscaling", "horizontalpodautoscalers"): _validate_hpa,
}


def validate(rt: ResourceType, obj: Obj, old: Obj | None = None) -> list[FieldError]:
    """All validation errors for creating (``old`` None) or updating an object."""
    errs = validate_metadata(rt, obj)
    check = _VALIDATORS.get(rt.key)
    if check is not None:
        errs += check(obj, old)
    return errs
