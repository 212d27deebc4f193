"""At most MAX_IN_FLIGHT requests per Transport reach the HTTP pool; the rest queue by urgency.

httpcore's pool scans every queued request against every connection whenever one starts or
ends, so hundreds of reconcilers writing at once made each write cost O(writers). The fake Api
below stands in for kr8s and counts how many requests it holds at a time. Routine requests
take at most ROUTINE_IN_FLIGHT of the slots; a rollback's or a command's requests (the
reconcile's URGENCY) take the rest at once and go first in the queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from controller.core.priority import Urgency
from controller.shell.gate import urgency
from controller.shell.kube.resources import BY_KIND
from controller.shell.kube.transport import MAX_IN_FLIGHT, ROUTINE_IN_FLIGHT, Transport
from tests.unit.fake_cluster import until


class Response:
    def json(self) -> dict[str, Any]:
        return {"kind": "Pod"}


class HeldApi:
    """A kr8s Api whose requests all wait until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.peak = 0
        self.started = 0
        self.order: list[str] = []  # the URLs in the order they reached the API
        self.held: dict[str, asyncio.Event] = {}  # per URL, for releasing one at a time

    @asynccontextmanager
    async def call_api(self, method: str, **kwargs: Any) -> AsyncIterator[Response]:
        self.in_flight += 1
        self.started += 1
        self.peak = max(self.peak, self.in_flight)
        url = str(kwargs.get("url"))
        self.order.append(url)
        done = self.held.setdefault(url, asyncio.Event())
        waits = [asyncio.ensure_future(self.gate.wait()), asyncio.ensure_future(done.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            yield Response()
        finally:
            for w in waits:
                w.cancel()
            self.in_flight -= 1

    async def finish(self, url: str) -> None:
        """Let one held request answer; wait until the next waiter has taken its slot."""
        started = self.started
        self.held[url].set()
        await until(lambda: self.started > started)


async def test_a_burst_of_writes_reaches_the_pool_at_most_max_in_flight_at_a_time() -> None:
    api = HeldApi()
    transport = Transport(api, None, timeout=5.0)
    burst = 3 * MAX_IN_FLIGHT
    tasks = [
        asyncio.create_task(transport.request("GET", BY_KIND["pods"], "ns", f"p{i}"))
        for i in range(burst)
    ]
    await until(lambda: api.started >= ROUTINE_IN_FLIGHT)
    for _ in range(10):  # more turns of the loop: nobody else gets through the gate
        await asyncio.sleep(0)
    assert api.in_flight == ROUTINE_IN_FLIGHT  # the rest of the slots wait for urgent work
    api.gate.set()
    results = await asyncio.gather(*tasks)
    assert len(results) == burst and api.started == burst
    assert api.peak == ROUTINE_IN_FLIGHT


async def rollback_write(transport: Transport, name: str) -> dict[str, Any]:
    with urgency(Urgency.ROLLBACK):  # as the reconcile of a rollback sets it
        return await transport.request("PATCH", BY_KIND["deployments"], "ns", name)


async def test_a_rollback_write_passes_a_saturated_queue_of_routine_writes() -> None:
    api = HeldApi()
    transport = Transport(api, None, timeout=5.0)
    routine = [
        asyncio.create_task(transport.request("GET", BY_KIND["pods"], "ns", f"p{i}"))
        for i in range(200)
    ]
    await until(lambda: api.started >= ROUTINE_IN_FLIGHT)
    rollback = asyncio.create_task(rollback_write(transport, "stable"))
    # it reaches the API at once, with 184 routine requests still queued before it
    await until(lambda: any("stable" in url for url in api.order))
    assert transport.slots.waiting() == {Urgency.ROUTINE: 200 - ROUTINE_IN_FLIGHT}
    api.gate.set()
    await asyncio.gather(rollback, *routine)


async def test_with_every_slot_taken_the_next_free_one_goes_to_the_urgent_waiter() -> None:
    api = HeldApi()
    transport = Transport(api, None, timeout=5.0)
    routine = [
        asyncio.create_task(transport.request("GET", BY_KIND["pods"], "ns", f"p{i}"))
        for i in range(ROUTINE_IN_FLIGHT + 30)
    ]
    reserved = MAX_IN_FLIGHT - ROUTINE_IN_FLIGHT
    urgent = [
        asyncio.create_task(rollback_write(transport, f"urgent-{i}")) for i in range(reserved + 1)
    ]
    await until(lambda: api.started == MAX_IN_FLIGHT)
    assert transport.slots.waiting() == {Urgency.ROLLBACK: 1, Urgency.ROUTINE: 30}
    # one routine request answers: its slot goes to the rollback write, not the 30 older ones
    first_routine = next(url for url in api.order if url.startswith("pods/"))
    await api.finish(first_routine)
    await until(lambda: any(url.endswith(f"urgent-{reserved}") for url in api.order))
    assert api.in_flight == MAX_IN_FLIGHT
    assert transport.slots.waiting() == {Urgency.ROUTINE: 30}
    api.gate.set()
    await asyncio.gather(*urgent, *routine)
    assert api.peak == MAX_IN_FLIGHT


async def test_a_cancelled_waiter_gives_its_place_and_leaks_no_slot() -> None:
    api = HeldApi()
    transport = Transport(api, None, timeout=5.0)
    routine = [
        asyncio.create_task(transport.request("GET", BY_KIND["pods"], "ns", f"p{i}"))
        for i in range(ROUTINE_IN_FLIGHT + 5)
    ]
    await until(lambda: api.started == ROUTINE_IN_FLIGHT)
    waiting = routine[ROUTINE_IN_FLIGHT:]
    for task in waiting:
        task.cancel()
    api.gate.set()
    await asyncio.gather(*routine, return_exceptions=True)
    assert transport.slots.in_flight[Urgency.ROUTINE] == 0
    assert transport.slots.waiting() == {}
    assert api.started == ROUTINE_IN_FLIGHT


async def test_a_request_waiting_for_a_slot_times_out_with_a_clear_error() -> None:
    api = HeldApi()
    transport = Transport(api, None, timeout=0.05)
    held = [
        asyncio.create_task(transport.request("GET", BY_KIND["pods"], "ns", f"p{i}"))
        for i in range(ROUTINE_IN_FLIGHT + 1)
    ]
    results = await asyncio.gather(*held, return_exceptions=True)
    # every one timed out: the gate never opened; none hung
    assert all(isinstance(r, Exception) and "timed out" in str(r) for r in results)
    assert api.peak == ROUTINE_IN_FLIGHT
    assert transport.slots.in_flight[Urgency.ROUTINE] == 0  # the timed-out ones gave theirs back
