"""At most MAX_IN_FLIGHT requests per Transport reach the HTTP pool; the rest queue in order.

httpcore's pool scans every queued request against every connection whenever one starts or
ends, so hundreds of reconcilers writing at once made each write cost O(writers). The fake Api
below stands in for kr8s and counts how many requests it holds at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from controller.shell.kube.resources import BY_KIND
from controller.shell.kube.transport import MAX_IN_FLIGHT, Transport
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

    @asynccontextmanager
    async def call_api(self, method: str, **kwargs: Any) -> AsyncIterator[Response]:
        self.in_flight += 1
        self.started += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gate.wait()
            yield Response()
        finally:
            self.in_flight -= 1


async def test_a_burst_of_writes_reaches_the_pool_at_most_max_in_flight_at_a_time() -> None:
    api = HeldApi()
    transport = Transport(api, None, timeout=5.0)
    burst = 3 * MAX_IN_FLIGHT
    tasks = [
        asyncio.create_task(transport.request("GET", BY_KIND["pods"], "ns", f"p{i}"))
        for i in range(burst)
    ]
    await until(lambda: api.started >= MAX_IN_FLIGHT)
    for _ in range(10):  # more turns of the loop: nobody else gets through the gate
        await asyncio.sleep(0)
    assert api.in_flight == MAX_IN_FLIGHT
    api.gate.set()
    results = await asyncio.gather(*tasks)
    assert len(results) == burst and api.started == burst
    assert api.peak == MAX_IN_FLIGHT


async def test_a_request_waiting_for_a_slot_times_out_with_a_clear_error() -> None:
    api = HeldApi()
    transport = Transport(api, None, timeout=0.05)
    held = [
        asyncio.create_task(transport.request("GET", BY_KIND["pods"], "ns", f"p{i}"))
        for i in range(MAX_IN_FLIGHT + 1)
    ]
    results = await asyncio.gather(*held, return_exceptions=True)
    # every one timed out: the gate never opened; none hung
    assert all(isinstance(r, Exception) and "timed out" in str(r) for r in results)
    assert api.peak == MAX_IN_FLIGHT
