"""What a DELETE does beyond removing: graceful deletion of Pods, and the Status it answers."""

from __future__ import annotations

from typing import Any

from controller.sandbox.kinds import ResourceType

Obj = dict[str, Any]


def grace_period(rt: ResourceType, obj: Obj, requested: Any) -> int:
    """Seconds a delete waits: 0 (at once) but for a Pod bound to a node and still running."""
    if not rt.graceful_delete:
        return 0
    spec = obj.get("spec") or {}
    grace = (
        int(requested)
        if requested is not None
        else int(spec.get("terminationGracePeriodSeconds", 30))
    )
    if not spec.get("nodeName") or (obj.get("status") or {}).get("phase") in (
        "Failed",
        "Succeeded",
    ):
        return 0
    return max(grace, 0) if grace >= 0 else 1


def deleted_status(rt: ResourceType, obj: Obj) -> Obj:
    """The Success Status a DELETE answers for kinds that do not return the object."""
    details: Obj = {"name": obj["metadata"]["name"]}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    details["uid"] = obj["metadata"]["uid"]
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
