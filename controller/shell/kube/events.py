"""The core v1 Event object the adapter records (pure): naming, fields, size limits, and the
de-duplication of repeats (like client-go's recorder: an identical Event within a window bumps
``count`` and ``lastTimestamp`` of the one already recorded instead of adding another)."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from controller.core.objects import ObjectRef, format_time

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


REPEAT_WINDOW = timedelta(minutes=10)  # client-go's default aggregation window
REMEMBERED = 4096  # distinct Events remembered (LRU), as client-go's cache


@dataclass
class Recorded:
    """An Event this process recorded: its name and how often it happened so far."""

    name: str
    count: int
    last: datetime


EventKey = tuple[str, str, str, str, str, str, str]


def event_key(
    namespace: str, involved: ObjectRef, type: str, reason: str, message: str
) -> EventKey:
    """What makes two Events the same one happening again."""
    return (
        namespace,
        involved.kind,
        involved.name,
        involved.uid or "",
        type,
        reason,
        message[:MESSAGE_MAX],
    )


class RepeatTracker:
    """Which Events were recorded recently, so a repeat updates the first one (pure)."""

    def __init__(self, window: timedelta = REPEAT_WINDOW, size: int = REMEMBERED) -> None:
        self.window = window
        self.size = size
        self._seen: OrderedDict[EventKey, Recorded] = OrderedDict()

    def repeat_of(self, key: EventKey, now: datetime) -> Recorded | None:
        """The Event `key` repeats, if it was recorded within the window."""
        seen = self._seen.get(key)
        if seen is None or now - seen.last > self.window:
            return None
        return seen

    def recorded(self, key: EventKey, name: str, count: int, now: datetime) -> None:
        """Remember that `name` now stands for `key`, `count` times."""
        self._seen[key] = Recorded(name, count, now)
        self._seen.move_to_end(key)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def forget(self, key: EventKey) -> None:
        """The recorded Event is gone (expired on the server): the next one starts over."""
        self._seen.pop(key, None)


def repeat_patch(count: int, when: datetime) -> dict[str, Any]:
    """The merge patch that records one more occurrence of an Event."""
    return {"count": count, "lastTimestamp": format_time(when)}
