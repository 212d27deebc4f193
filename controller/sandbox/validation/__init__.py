"""Object validation for the served kinds: the subset of ``pkg/apis/*/validation`` that matters.

Each function returns a list of :class:`FieldError`; an empty list means valid. The registry turns
a non-empty list into a 422 Invalid Status. Rules here are the ones a controller can trip over:
names, labels, the 256 KiB total of annotations, Deployment replicas/selector/template, immutable
fields, Service ports, Pod spec immutability, container lifecycle hooks, Lease durations,
EndpointSlice address types and events.k8s.io required fields.

By kind: :mod:`.common` (names, labels, annotations: every kind's metadata), :mod:`.workloads`
(Deployments, Pods), :mod:`.resources` (the other served kinds).
"""

from __future__ import annotations

from controller.sandbox.apierrors import FieldError
from controller.sandbox.kinds import ResourceType
from controller.sandbox.validation.common import Obj, validate_metadata
from controller.sandbox.validation.resources import (
    validate_configmap,
    validate_endpointslice,
    validate_event,
    validate_event_v1,
    validate_hpa,
    validate_lease,
    validate_service,
)
from controller.sandbox.validation.workloads import validate_deployment, validate_pod

__all__ = ["validate"]

_VALIDATORS = {
    ("apps", "deployments"): validate_deployment,
    ("", "pods"): validate_pod,
    ("", "services"): validate_service,
    ("", "configmaps"): validate_configmap,
    ("coordination.k8s.io", "leases"): validate_lease,
    ("discovery.k8s.io", "endpointslices"): validate_endpointslice,
    ("", "events"): validate_event,
    ("events.k8s.io", "events"): validate_event_v1,
    ("autoscaling", "horizontalpodautoscalers"): validate_hpa,
}


def validate(rt: ResourceType, obj: Obj, old: Obj | None = None) -> list[FieldError]:
    """All validation errors for creating (``old`` None) or updating an object."""
    errs = validate_metadata(rt, obj)
    check = _VALIDATORS.get(rt.key)
    if check is not None:
        errs += check(obj, old)
    return errs
