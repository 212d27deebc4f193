"""Validation of the other served kinds: Service, ConfigMap, Lease, EndpointSlice, Event, HPA."""

from __future__ import annotations

from controller.sandbox.apierrors import FieldError
from controller.sandbox.validation.common import (
    CONFIG_KEY,
    Obj,
    invalid,
    is_int,
    required,
    validate_labels,
)


def validate_service(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
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
        return [invalid("spec.ports", ports, "must be a list")]
    if stype != "ExternalName" and spec.get("clusterIP") != "None" and not ports:
        errs.append(required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            errs.append(invalid(f"spec.ports[{i}]", port, "must be an object"))
            continue
        p = port.get("port")
        if not is_int(p) or not 1 <= p <= 65535:
            errs.append(
                invalid(f"spec.ports[{i}].port", p, "must be between 1 and 65535, inclusive")
            )
        name = port.get("name", "")
        if len(ports) > 1 and not name:
            errs.append(required(f"spec.ports[{i}].name"))
        elif name in names:
            errs.append(FieldError(f"spec.ports[{i}].name", "FieldValueDuplicate", "", name))
        names.add(name)
    errs += validate_labels(spec.get("selector"), "spec.selector")
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if old_ip and spec.get("clusterIP") != old_ip:
            errs.append(invalid("spec.clusterIP", spec.get("clusterIP"), "field is immutable"))
    return errs


def validate_configmap(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for field in ("data", "binaryData"):
        data = obj.get(field)
        if data is None:
            continue
        if not isinstance(data, dict):
            errs.append(invalid(field, data, "must be a map"))
            continue
        for k, v in data.items():
            if not CONFIG_KEY.match(k):
                errs.append(
                    invalid(
                        field,
                        k,
                        "a valid config key must consist of alphanumeric characters, "
                        "'-', '_' or '.'",
                    )
                )
            if not isinstance(v, str):
                errs.append(invalid(f"{field}[{k}]", v, "must be a string"))
    return errs


def validate_lease(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    for field in ("leaseDurationSeconds", "leaseTransitions"):
        value = spec.get(field)
        if value is None:
            continue
        if not is_int(value):
            errs.append(invalid(f"spec.{field}", value, "must be an integer"))
        elif field == "leaseDurationSeconds" and value <= 0:
            errs.append(invalid(f"spec.{field}", value, "must be greater than 0"))
        elif value < 0:
            errs.append(invalid(f"spec.{field}", value, "must be greater than or equal to 0"))
    return errs


def validate_endpointslice(obj: Obj, old: Obj | None) -> list[FieldError]:
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
        errs.append(invalid("addressType", at, "field is immutable"))
    endpoints = obj.get("endpoints")
    if endpoints is not None and not isinstance(endpoints, list):
        errs.append(invalid("endpoints", endpoints, "must be a list"))
    for i, ep in enumerate(endpoints or []):
        addresses = ep.get("addresses") if isinstance(ep, dict) else None
        if not isinstance(addresses, list) or not 1 <= len(addresses) <= 100:
            errs.append(required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
    return errs


def validate_event(obj: Obj, old: Obj | None) -> list[FieldError]:
    ns = obj["metadata"].get("namespace", "")
    involved = obj.get("involvedObject") or {}
    if isinstance(involved, dict) and involved.get("namespace") and involved["namespace"] != ns:
        return [
            invalid(
                "involvedObject.namespace", involved["namespace"], "does not match event.namespace"
            )
        ]
    return []


def validate_event_v1(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    for field in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
        if not obj.get(field):
            errs.append(required(field))
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
            invalid("regarding.namespace", regarding["namespace"], "does not match event.namespace")
        )
    return errs


def validate_hpa(obj: Obj, old: Obj | None) -> list[FieldError]:
    """autoscaling/v2: a scale target, and 1 <= minReplicas <= maxReplicas."""
    errs: list[FieldError] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    ref = spec.get("scaleTargetRef")
    if not isinstance(ref, dict):
        errs.append(required("spec.scaleTargetRef"))
    else:
        for key in ("kind", "name"):
            if not isinstance(ref.get(key), str) or not ref.get(key):
                errs.append(required(f"spec.scaleTargetRef.{key}"))
    high = spec.get("maxReplicas")
    if not is_int(high) or high < 1:
        errs.append(invalid("spec.maxReplicas", high, "must be greater than or equal to 1"))
    low = spec.get("minReplicas", 1)
    if not is_int(low) or low < 1:
        errs.append(invalid("spec.minReplicas", low, "must be greater than or equal to 1"))
    elif is_int(high) and low > high:
        errs.append(
            invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`")
        )
    return errs
