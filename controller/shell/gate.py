"""The priority gate: slots taken most-urgent-first, with a budget for routine work.

The ordering policy is pure (:mod:`controller.core.priority`); this is its asyncio mechanism. Work
states its urgency explicitly (``gate.slot(Urgency.BREACHING)``) or inherits it from the
:data:`URGENCY` context variable, which a reconcile sets (:func:`urgency`) around the writes of
a rollback or a command: the variable follows the task through every ``await`` down to the
transport, so the API layer needs no urgency argument on each call.

Waiters are kept in one FIFO queue per urgency, so admitting one costs O(classes), not
O(waiters): the gate sits in front of the HTTP pool precisely because a per-request scan of
hundreds of waiters was too slow (see :mod:`controller.shell.kube.transport`).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

from controller.core.priority import GatePolicy, Urgency, next_to_admit

URGENCY: ContextVar[Urgency] = ContextVar("ptc_urgency", default=Urgency.ROUTINE)


@contextmanager
def urgency(level: Urgency) -> Iterator[None]:
    """Run the block's gated work (API requests) at ``level``."""
    token = URGENCY.set(level)
    try:
        yield
    finally:
        URGENCY.reset(token)


class PriorityGate:
    """At most ``policy.capacity`` holders; see the module docstring."""

    def __init__(self, policy: GatePolicy) -> None:
        self.policy = policy
        self.in_flight: collections.Counter[Urgency] = collections.Counter()
        self._waiting: dict[Urgency, collections.deque[asyncio.Future[None]]] = {
            u: collections.deque() for u in Urgency
        }
        self.admitted: collections.Counter[Urgency] = collections.Counter()  # totals, for tests

    def waiting(self) -> dict[Urgency, int]:
        """Waiters per urgency (a just-cancelled one may still be counted until dropped)."""
        return {u: len(q) for u, q in self._waiting.items() if q}

    @asynccontextmanager
    async def slot(self, level: Urgency | None = None) -> AsyncIterator[None]:
        """Hold one slot for the block (``level`` defaults to the :data:`URGENCY` in force)."""
        level = URGENCY.get() if level is None else level
        await self._acquire(level)
        try:
            yield
        finally:
            self._release(level)

    async def _acquire(self, level: Urgency) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting[level]
        queue.append(future)
        self._dispatch()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(level)  # admitted just as we were cancelled: give it back
            elif future in queue:  # (dispatch may have dropped it already)
                queue.remove(future)
            raise

    def _release(self, level: Urgency) -> None:
        self.in_flight[level] -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        while True:
            level = next_to_admit(self.waiting(), self.in_flight, self.policy)
            if level is None:
                return
            future = self._waiting[level].popleft()
            if future.done():  # cancelled while queued: its task is leaving, not waiting
                continue
            self.in_flight[level] += 1
            self.admitted[level] += 1
            future.set_result(None)
