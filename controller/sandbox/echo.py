"""When a write's watch echo reaches clients, relative to the write's own response.

A real API server answers a write on one connection and sends its watch event on others; which
one a client reads first is a race. Measured on a plain kube-apiserver with an asyncio watch
connection and a separate write connection (as ptc uses): the echo arrived *before* the
response for 26 of 100 writes. An in-process sandbox nearly always answers first, so client
code that only works when the response wins would pass every test here and fail on a cluster.
So each write that commits something gets one of three orders:

- ``before``: the response is held until every open watch stream that gets the write's event
  has sent it (at most ``before_limit`` s, so a stalled watcher never hangs writers), then a
  moment longer (``before_pause``) so the client has read the event first;
- ``with``: the event is queued for the watch streams as the write commits and the response
  goes out at once (the sandbox's natural order);
- ``after``: the watch streams hold the event until ``after_delay`` (a random span) after the
  response was sent. A stream never reorders: events behind a held one wait with it.

Mode ``random`` (the default) picks one per write from a seeded generator; the three names
force one order (for tests that need a given one). Writes made in-process (the workload
simulator) and watches made in-process are not affected: only HTTP writes and HTTP watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Callable, Iterable

from aiohttp import web

from controller.sandbox.store import Watch

ORDERS = ("before", "with", "after")
MODES = ("random", *ORDERS)


class EchoOrdering:
    """Orders each HTTP write's watch echo against its response; see the module docstring."""

    def __init__(
        self,
        mode: str = "random",
        *,
        seed: int | None = None,
        after_delay: tuple[float, float] = (0.05, 0.2),
        before_limit: float = 1.0,
        before_pause: float = 0.02,
    ) -> None:
        self.mode = mode
        self.after_delay = after_delay
        self.before_limit = before_limit
        self.before_pause = before_pause
        self.counts: Counter[str] = Counter()  # writes answered in each order
        self._rng = random.Random(seed)
        self._held: dict[int, asyncio.Event] = {}  # resourceVersion -> released
        self._changed = asyncio.Event()  # replaced on every change, so each waiter wakes

    @property
    def mode(self) -> str:
        """``random``, ``before``, ``with`` or ``after``."""
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"echo order must be one of {', '.join(MODES)}, not {mode!r}")
        self._mode = mode

    def choose(self) -> str:
        """The order for the next write."""
        return self._rng.choice(ORDERS) if self._mode == "random" else self._mode

    async def respond(
        self,
        request: web.Request,
        response: web.StreamResponse,
        committed: range,
        streams: Iterable[Watch],
    ) -> web.StreamResponse:
        """Answer a write whose events have the resourceVersions ``committed``."""
        order = self.choose()
        self.counts[order] += 1
        if order == "after":
            released = asyncio.Event()
            for version in committed:
                self._held[version] = released
            try:
                await response.prepare(request)
                await response.write_eof()
            finally:
                delay = self._rng.uniform(*self.after_delay)
                asyncio.get_running_loop().call_later(delay, self._release, committed, released)
        elif order == "before":
            # the streams this write's events went to, and the last of them each must send
            waiting = [(w, w.offered) for w in streams if w.offered >= committed.start]
            # bounded: a watcher that does not read must not hang the writer
            with contextlib.suppress(TimeoutError):
                await self._until(
                    lambda: all(w.closed or w.sent >= last for w, last in waiting),
                    self.before_limit,
                )
            await asyncio.sleep(self.before_pause)
        return response

    async def gate(self, version: int) -> None:
        """A watch stream calls this before sending the event ``version``: wait while held."""
        released = self._held.get(version)
        if released is not None:
            await released.wait()

    def sent(self, watch: Watch, version: int) -> None:
        """A watch stream has sent the event ``version``."""
        watch.sent = version
        self._notify()

    def closed(self) -> None:
        """A watch stream ended (a write held for it may go on)."""
        self._notify()

    def _release(self, committed: range, released: asyncio.Event) -> None:
        for version in committed:
            self._held.pop(version, None)
        released.set()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, condition: Callable[[], bool], limit: float) -> None:
        async with asyncio.timeout(limit):
            while not condition():
                await self._changed.wait()


__all__ = ["MODES", "ORDERS", "EchoOrdering"]
