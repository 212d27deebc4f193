"""The sandbox API server's write audit, and a gate that holds chosen writes on arrival.

Like a real API server's audit log at the ``ResponseComplete`` stage: every mutating request
(create, update, patch, delete) is recorded once the server has decided it, with who sent it,
what it addressed, the answer's code, and ``seq`` — the order of decisions, so "did this write
land after that one" never depends on clock resolution. A write that committed also carries the
store's resourceVersion after it, and every write the precondition it carried (``condition``: the
``metadata.resourceVersion`` of an update or patch, the ``preconditions`` of a delete), so a test
can tell a conditional write from a blind one.

:class:`WriteGate` lets a test stop a write *after its body was fully received* and before it is
applied, learn that it arrived, do something (freeze the sender, let another controller act),
then let it go on. The server then applies it whatever the sender did meanwhile: a real API
server finishes a request it has received even if the client gave up waiting for the answer
(aiohttp does not cancel a handler when the client disconnects). Seen from the server, a write
held here is the same as one its sender was frozen just before sending.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


@dataclass(frozen=True)
class AuditEntry:
    """One decided write: ``code`` < 300 means it was applied."""

    seq: int
    at: float  # time.monotonic() when decided
    user: str
    verb: str
    resource: str  # plural[/subresource], e.g. "deployments/scale"
    namespace: str
    name: str | None
    code: int
    resource_version: int | None  # the store's, after a write that committed
    held: bool = False  # it waited at the gate
    condition: str | None = None  # its precondition, see precondition()

    @property
    def applied(self) -> bool:
        """Whether the server applied it (a 2xx answer)."""
        return self.code < 300


@dataclass(frozen=True)
class Arrival:
    """A write that reached the server, as the gate sees it (before it is applied)."""

    user: str
    verb: str
    resource: str
    namespace: str
    name: str | None
    condition: str | None = None  # its precondition, once its body was read


def precondition(verb: str, body: bytes) -> str | None:
    """The precondition a write's body carries: ``resourceVersion=N`` (update, patch: the
    body's ``metadata.resourceVersion``; delete: ``preconditions``), ``uid=U`` (delete), or
    None for a blind write (and for a create, or a body that is not a JSON object)."""
    try:
        doc = json.loads(body) if body.strip() else None
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if verb == "delete":
        fields = doc.get("preconditions")
    elif verb in ("update", "patch"):
        fields = doc.get("metadata")
    else:
        return None
    if not isinstance(fields, dict):
        return None
    found = [f"{k}={fields[k]}" for k in ("uid", "resourceVersion") if fields.get(k)]
    return ",".join(found) or None


@dataclass
class Held:
    """A write stopped at the gate: ``arrived`` is set when one comes; ``release()`` lets it on."""

    matches: Callable[[Arrival], bool]
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    what: Arrival | None = None
    _go: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Let the held write be applied (or let the next matching one pass, if none came)."""
        self._go.set()

    async def wait_arrived(self, timeout: float) -> Arrival:
        """The held write, once one arrived (TimeoutError after ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            await self.arrived.wait()
        assert self.what is not None
        return self.what


class WriteGate:
    """Holds the first write matching each armed :class:`Held`; everything else passes."""

    def __init__(self) -> None:
        self._armed: list[Held] = []

    def arm(self, matches: Callable[[Arrival], bool]) -> Held:
        """Hold the next write for which ``matches`` is true (one write per arm)."""
        held = Held(matches)
        self._armed.append(held)
        return held

    def release_all(self) -> None:
        """Let every held write go on and disarm (server shutdown)."""
        for held in self._armed:
            held.release()
        self._armed.clear()

    async def pass_through(self, arrival: Arrival) -> bool:
        """Wait while ``arrival`` is held; whether it was."""
        for held in self._armed:
            if held.matches(arrival):
                self._armed.remove(held)
                held.what = arrival
                held.arrived.set()
                await held._go.wait()
                return True
        return False


class Audit:
    """The list of decided writes, in decision order."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def record(
        self,
        arrival: Arrival,
        code: int,
        resource_version: int | None,
        *,
        held: bool = False,
    ) -> AuditEntry:
        """Append the decision on one write."""
        entry = AuditEntry(
            seq=len(self.entries) + 1,
            at=time.monotonic(),
            user=arrival.user,
            verb=arrival.verb,
            resource=arrival.resource,
            namespace=arrival.namespace,
            name=arrival.name,
            code=code,
            resource_version=resource_version,
            held=held,
            condition=arrival.condition,
        )
        self.entries.append(entry)
        return entry

    def writes(
        self, *, user: str | None = None, resources: frozenset[str] | None = None
    ) -> list[AuditEntry]:
        """Entries by ``user`` and on ``resources`` (None: any)."""
        return [
            e
            for e in self.entries
            if (user is None or e.user == user) and (resources is None or e.resource in resources)
        ]


__all__ = ["WRITE_VERBS", "Arrival", "Audit", "AuditEntry", "Held", "WriteGate", "precondition"]
