"""The sandbox delivers a write's watch echo before, with or after the write's response.

Raw HTTP: one connection watches, another writes, as a controller's informer and its writes do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controller.sandbox.apiserver import ApiServer
from tests.sandbox.conftest import service

SERVICES = "/api/v1/namespaces/default/services"
MERGE = {"Content-Type": "application/merge-patch+json"}


class Watcher:
    """An HTTP watch of Services, noting when each resourceVersion arrived."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api
        self.arrived: dict[str, float] = {}
        self.order: list[int] = []
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()

    async def __aenter__(self) -> Watcher:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._opened.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        since = self.api.store.resource_version
        async with (
            aiohttp.ClientSession(base_url=self.api.url) as http,
            http.get(SERVICES, params={"watch": "true", "resourceVersion": str(since)}) as resp,
        ):
            self._opened.set()
            async for line in resp.content:
                event = json.loads(line)
                version = event["object"]["metadata"]["resourceVersion"]
                self.arrived[version] = loop.time()
                self.order.append(int(version))
                self.changed.set()

    async def wait_for(self, version: str, limit: float = 3.0) -> float:
        async with asyncio.timeout(limit):
            while version not in self.arrived:
                self.changed.clear()
                await self.changed.wait()
        return self.arrived[version]


@pytest.fixture
async def http(api_server: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=api_server.url, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:
        yield session


async def annotate(http: aiohttp.ClientSession, value: str) -> str:
    """Patch the Service over HTTP; the resourceVersion of the write."""
    body = json.dumps({"metadata": {"annotations": {"note": value}}}).encode()
    async with http.patch(f"{SERVICES}/web", data=body, headers=MERGE) as resp:
        assert resp.status == 200
        written: dict[str, Any] = await resp.json()
    return str(written["metadata"]["resourceVersion"])


async def test_before_the_echo_is_read_before_the_response(
    api_server: ApiServer, http: aiohttp.ClientSession
) -> None:
    api_server.create(service("web"))
    api_server.echo.mode = "before"
    async with Watcher(api_server) as watcher:
        for i in range(5):
            version = await annotate(http, f"before-{i}")
            assert version in watcher.arrived, "the response came before its watch event"
    assert api_server.echo.counts["before"] == 5


async def test_after_the_echo_follows_the_response_by_a_delay(
    api_server: ApiServer, http: aiohttp.ClientSession
) -> None:
    api_server.create(service("web"))
    api_server.echo.mode = "after"
    loop = asyncio.get_running_loop()
    async with Watcher(api_server) as watcher:
        for i in range(3):
            version = await annotate(http, f"after-{i}")
            answered = loop.time()
            assert version not in watcher.arrived, "the watch event came before the response"
            # the server holds it 50-200 ms after sending the response
            assert await watcher.wait_for(version) - answered >= 0.03
    assert api_server.echo.counts["after"] == 3


async def test_random_mixes_the_orders_but_a_stream_never_reorders(
    api_server: ApiServer, http: aiohttp.ClientSession
) -> None:
    api_server.create(service("web"))
    assert api_server.echo.mode == "random"  # the default
    async with Watcher(api_server) as watcher:
        versions = await asyncio.gather(*(annotate(http, f"r-{i}") for i in range(30)))
        for version in versions:
            await watcher.wait_for(version)
    assert watcher.order == sorted(watcher.order)
    assert len(watcher.order) == len(set(watcher.order)) == 30
    counts = api_server.echo.counts
    assert set(counts) == {"before", "with", "after"} and sum(counts.values()) == 30


async def test_a_no_op_write_and_a_failed_one_have_no_echo_to_order(
    api_server: ApiServer, http: aiohttp.ClientSession
) -> None:
    api_server.create(service("web"))
    api_server.echo.mode = "after"
    first = await annotate(http, "same")
    assert await annotate(http, "same") == first  # no change: no new version, no event
    async with http.patch(f"{SERVICES}/ghost", data=b"{}", headers=MERGE) as resp:
        assert resp.status == 404
    assert api_server.echo.counts["after"] == 1


def test_an_unknown_echo_order_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="random, before, with, after"):
        ApiServer(echo_order="sometimes")


async def test_a_watcher_that_never_reads_delays_a_before_write_only_up_to_the_limit(
    api_server: ApiServer, http: aiohttp.ClientSession
) -> None:
    api_server.create(service("web"))
    api_server.echo.mode = "before"
    api_server.echo.before_limit = 0.2
    # An HTTP watch whose stream never gets to send (as if its client stopped reading).
    stuck = api_server.store.watch(None, "default")
    api_server._watch_requests[stuck] = None  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await annotate(http, "stuck")
        assert 0.2 <= loop.time() - started < 2.0
    finally:
        api_server._watch_requests.pop(stuck)
        stuck.close()
