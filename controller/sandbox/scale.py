"""The ``scale`` subresource: a Deployment seen as an ``autoscaling/v1`` Scale, and a Scale read."""

from __future__ import annotations

from typing import Any

from controller.sandbox import apierrors as errors
from controller.sandbox.selectors import selector_to_string

Obj = dict[str, Any]


def scale_of(obj: Obj) -> Obj:
    """The ``autoscaling/v1`` Scale view of a Deployment."""
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {
            "replicas": status.get("replicas", 0),
            "selector": selector_to_string(spec.get("selector")),
        },
    }


def parse_scale(scale: Any, name: str) -> tuple[int, object]:
    """A Scale body's replicas and resourceVersion precondition; 400/422 when it is not one."""
    if not isinstance(scale, dict):
        raise errors.bad_request("the body of the request must be a Scale object")
    meta = scale.get("metadata") or {}
    if meta.get("name") not in (None, "", name):
        raise errors.bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
        )
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid(
            "autoscaling",
            "Scale",
            name,
            [
                errors.FieldError(
                    "spec.replicas",
                    "FieldValueInvalid",
                    "must be greater than or equal to 0",
                    replicas,
                )
            ],
        )
    return replicas, meta.get("resourceVersion")
