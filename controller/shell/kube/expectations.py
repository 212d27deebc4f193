"""Our writes the watch has not echoed yet: what to trust over a lagging informer cache.

After a write returns resourceVersion X, the cache may still hold an older object for a while;
deciding on it would repeat the write's action. So the writer records an *expectation* ("our
write produced X; until the cache has it, trust this value") and reads through it. It is met by
whichever comes first:

- the informer has delivered X: checked when the expectation is set, because on a real API
  server the watch echo of a write often arrives *before* the write's response; and on every
  event after (push, :meth:`Expectations.saw_event`) as well as on every read (pull);
- a list *requested after* the write returned has replaced the cache (a relist after 410 Gone
  may never replay X, but such a list holds X or a later state);
- the object was deleted;
- a TTL passed (last resort: the echo was lost some way we do not know of).

Events other than X do not meet it: the watch delivers events in order, so until X arrives
every event for the object is older than our write (when X arrived before the expectation was
set, the first rule already met it). resourceVersions are opaque and never compared by size.

While an expectation is pending its value is the newest thing known about the object. One
expectation per object: a second write replaces the first, whose echo comes before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

import structlog

V = TypeVar("V")

DEFAULT_TTL = timedelta(seconds=30)

log = structlog.get_logger(__name__)


class Delivery(Protocol):
    """What expectations need from an informer
    (:class:`~controller.shell.kube.informer.Informer`)."""

    def delivered(self, name: str, resource_version: str) -> bool: ...

    def list_mark(self) -> int: ...

    def relisted_since(self, mark: int) -> bool: ...


@dataclass(frozen=True)
class Expectation(Generic[V]):
    """Our write of ``name`` produced ``resource_version``; trust ``value`` until it is seen."""

    name: str
    resource_version: str
    value: V
    list_mark: int
    expires: datetime


class Expectations(Generic[V]):
    """Pending expectations for one informer's objects, by name; see the module docstring."""

    def __init__(
        self,
        informer: Delivery,
        clock: Callable[[], datetime],
        *,
        ttl: timedelta = DEFAULT_TTL,
        what: str = "",
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._informer = informer
        self._clock = clock
        self._ttl = ttl
        self._what = what
        self._log = logger or log
        self._pending: dict[str, Expectation[V]] = {}

    def expect(self, name: str, resource_version: str, value: V) -> bool:
        """Record our write; False when its echo has already passed (nothing to wait for)."""
        self._pending.pop(name, None)
        if not resource_version or self._informer.delivered(name, resource_version):
            return False
        self._pending[name] = Expectation(
            name,
            resource_version,
            value,
            self._informer.list_mark(),
            self._clock() + self._ttl,
        )
        return True

    def saw_event(self, name: str, resource_version: str, *, deleted: bool = False) -> None:
        """An informer event for ``name``: met by our version, or by the object's deletion."""
        pending = self._pending.get(name)
        if pending is not None and (deleted or pending.resource_version == resource_version):
            del self._pending[name]

    def get(self, name: str) -> V | None:
        """The value of our unechoed write of ``name``, or None (read the cache)."""
        pending = self._pending.get(name)
        if pending is None:
            return None
        why = self._settled(pending)
        if why is None:
            return pending.value
        del self._pending[name]
        if why == "expired":
            # Not expected to happen: every way an echo can be missed has a rule above.
            self._log.warning(
                "expectation expired",
                kind=self._what,
                object=name,
                resource_version=pending.resource_version,
                ttl=self._ttl.total_seconds(),
            )
        else:
            # a relist is worth a line (the echo never came); an echo is the normal case
            emit = self._log.info if why == "relist" else self._log.debug
            emit(
                "kube.expectation.met",
                kind=self._what,
                object=name,
                resource_version=pending.resource_version,
                by=why,
            )
        return None

    def version(self, name: str) -> str | None:
        """The resourceVersion our unechoed write of ``name`` produced, or None."""
        pending = self._pending.get(name)
        return (
            pending.resource_version if pending is not None and self.get(name) is not None else None
        )

    def deadline(self) -> datetime | None:
        """When the first pending expectation expires (a reconciler must look again then).

        Met and expired ones are dropped first, also those nobody reads any more (a Deployment
        a new spec no longer names): a deadline in the past would make a caller spin.
        """
        for name in list(self._pending):
            self.get(name)
        return min((p.expires for p in self._pending.values()), default=None)

    def _settled(self, pending: Expectation[V]) -> str | None:
        if self._informer.delivered(pending.name, pending.resource_version):
            return "echo"
        if self._informer.relisted_since(pending.list_mark):
            return "relist"
        if self._clock() >= pending.expires:
            return "expired"
        return None


__all__ = ["DEFAULT_TTL", "Delivery", "Expectation", "Expectations"]
