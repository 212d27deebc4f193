"""Expectations: trust our write until the informer has it, a later list replaced it, or a TTL.

resourceVersions here decrease with every write, so ordering them by size would be wrong.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from controller.shell.kube import Informer
from controller.shell.kube.expectations import Expectations
from controller.shell.kube.resources import BY_KIND
from tests.unit.fake_cluster import (
    NS,
    PARSERS,
    POLICY,
    FakeCluster,
    SteppedClock,
    populate,
    until,
)


class Delivered:
    """A stand-in informer: what it has delivered and which lists replaced its cache."""

    def __init__(self) -> None:
        self.versions: set[tuple[str, str]] = set()
        self.started = 1
        self.listed_from = 1

    def delivered(self, name: str, resource_version: str) -> bool:
        return (name, resource_version) in self.versions

    def list_mark(self) -> int:
        return self.started

    def relisted_since(self, mark: int) -> bool:
        return self.listed_from > mark


def expectations(ttl: float = 30) -> tuple[Expectations[str], Delivered, SteppedClock]:
    informer, clock = Delivered(), SteppedClock()
    return Expectations(informer, clock, ttl=timedelta(seconds=ttl)), informer, clock


def test_an_echo_that_passed_before_the_response_meets_it_at_once() -> None:
    own, informer, _ = expectations()
    informer.versions.add(("svc", "90"))
    assert own.expect("svc", "90", "ours") is False
    assert own.get("svc") is None


def test_only_our_version_meets_it_not_other_events() -> None:
    own, informer, _ = expectations()
    assert own.expect("svc", "90", "ours") is True
    for older in ("99", "100", "91", "9"):  # in flight before our write; never compared
        own.saw_event("svc", older)
        informer.versions.add(("svc", older))
        assert own.get("svc") == "ours"
    own.saw_event("other", "90")
    assert own.get("svc") == "ours"
    own.saw_event("svc", "90")
    assert own.get("svc") is None


def test_the_informer_having_our_version_meets_it_without_an_event() -> None:
    own, informer, _ = expectations()
    own.expect("svc", "90", "ours")
    informer.versions.add(("svc", "90"))
    assert own.get("svc") is None


def test_deletion_meets_it() -> None:
    own, _, _ = expectations()
    own.expect("svc", "90", "ours")
    own.saw_event("svc", "80", deleted=True)
    assert own.get("svc") is None


def test_a_list_requested_after_the_write_meets_it_one_requested_before_does_not() -> None:
    own, informer, _ = expectations()
    informer.started = 2  # a relist is in flight as our write returns
    own.expect("svc", "90", "ours")
    informer.listed_from = 2  # ... and lands: its snapshot may predate our write
    assert own.get("svc") == "ours"
    informer.started = informer.listed_from = 3  # the next list began after our write
    assert own.get("svc") is None


def test_the_ttl_is_the_last_resort_and_bounds_the_wait() -> None:
    own, _, clock = expectations(ttl=30)
    own.expect("a", "90", "first")
    clock.step(10)
    own.expect("b", "80", "second")
    assert own.deadline() == clock.now + timedelta(seconds=20)
    clock.step(20)
    assert own.get("a") is None
    assert own.get("b") == "second"
    assert own.deadline() == clock.now + timedelta(seconds=10)


def test_the_deadline_is_never_in_the_past_even_for_names_nobody_reads() -> None:
    own, informer, clock = expectations(ttl=30)
    own.expect("old-canary", "90", "from the previous spec")
    own.expect("svc", "80", "ours")
    informer.versions.add(("svc", "80"))  # met, but nobody asked since
    assert own.deadline() == clock.now + timedelta(seconds=30)
    clock.step(31)
    assert own.deadline() is None


def test_a_second_write_replaces_the_first() -> None:
    own, _, _ = expectations()
    own.expect("svc", "90", "first")
    own.expect("svc", "80", "second")
    own.saw_event("svc", "90")  # the first write's echo: the second one is still ahead
    assert own.get("svc") == "second"
    own.saw_event("svc", "80")
    assert own.get("svc") is None


# --- the informer's side, over the fake transport -------------------------------------------


async def test_the_informer_remembers_versions_it_delivered_and_lists_it_took() -> None:
    cluster = FakeCluster()
    populate(cluster, {}, stable=1, canary=0)
    gate = asyncio.Event()
    gate.set()
    transport = cluster.transport()
    plain_request = transport.request

    async def gated_request(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await plain_request(*args, **kwargs)

    transport.request = gated_request  # type: ignore[method-assign]

    async def open_transport() -> Any:
        return transport

    services: Informer[Any] = Informer(
        "services", BY_KIND["services"], NS, PARSERS["services"], open_transport, POLICY
    )
    await services.start()
    try:
        await services.wait_synced(5)
        listed = cluster.objects["services"]["zai-proxy"]["metadata"]["resourceVersion"]
        assert services.delivered("zai-proxy", listed)

        first = cluster.commit("services", cluster.objects["services"]["zai-proxy"])
        second = cluster.commit("services", cluster.objects["services"]["zai-proxy"])
        await cluster.settle()
        for version in (listed, first["metadata"]["resourceVersion"]):
            assert services.delivered("zai-proxy", version)  # went by, no longer cached
        assert services.delivered("zai-proxy", second["metadata"]["resourceVersion"])
        assert not services.delivered("zai-proxy", cluster.next_version())

        # A relist that began before a mark does not count as one after it.
        gate.clear()
        before = services.list_mark()
        cluster._send("services", {"type": "ERROR", "object": {"code": 410}})
        await until(lambda: services.list_mark() > before)
        mark = services.list_mark()
        gate.set()
        await until(lambda: services.stats.relists > 0)
        assert services.relisted_since(before)
        assert not services.relisted_since(mark)
    finally:
        await services.stop()
