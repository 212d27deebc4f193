"""The core v1 Event object the adapter records (pure): naming, fields, size limits."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from controller.kube.types import ObjectRef, format_time

MESSAGE_MAX = 1024  # what kubectl and the event recorder keep; longer notes are cut


def event_object(
    namespace: str,
    involved: ObjectRef,
    type: str,
    reason: str,
    message: str,
    *,
    component: str,
    instance: str,
    when: datetime,
) -> dict[str, Any]:
    """A v1 Event about ``involved`` happening once at ``when``."""
    now = format_time(when)
    # client-go names events <name>.<unix nanos in hex>; the random tail keeps two
    # controllers (or a frozen test clock) from colliding
    suffix = f"{int(when.timestamp() * 1e9):x}{secrets.token_hex(2)}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{involved.name[:200]}.{suffix}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.api_version,
            "kind": involved.kind,
            "namespace": involved.namespace,
            "name": involved.name,
            **({"uid": involved.uid} if involved.uid else {}),
        },
        "type": type,
        "reason": reason,
        "message": message[:MESSAGE_MAX],
        "source": {"component": component, "host": instance},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": instance,
    }
