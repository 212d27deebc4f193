"""ShardManager on an injectable clock, against an in-memory Lease store.

A replica whose clock jumps past its renew deadline (a paused process, a starved loop) stops
leading every shard at once, before any network call: each shard's fence closes on its own.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any

from controller.shell.kube import Conflict, LeaseInfo, NotFound
from controller.shell.shards import ShardManager, ShardSettings

SHARDS = 3


class FakeApi:
    """Leases and ConfigMaps with resourceVersion preconditions, in memory."""

    def __init__(self) -> None:
        self.leases: dict[str, LeaseInfo] = {}
        self.maps: dict[str, tuple[dict[str, str], str]] = {}
        self._versions = itertools.count(1)
        self.calls = 0
        self.gets: dict[str, int] = {}  # GETs per Lease

    async def get_lease(self, namespace: str, name: str) -> LeaseInfo:
        self.calls += 1
        self.gets[name] = self.gets.get(name, 0) + 1
        if name not in self.leases:
            raise NotFound(name)
        return self.leases[name]

    async def create_lease(
        self,
        namespace: str,
        name: str,
        *,
        holder: str | None,
        duration_seconds: int | None,
        acquire_time: datetime | None,
        renew_time: datetime | None,
        transitions: int = 0,
    ) -> LeaseInfo:
        self.calls += 1
        if name in self.leases:
            raise Conflict(name)
        return self._put(name, holder, duration_seconds, acquire_time, renew_time, transitions)

    async def update_lease(
        self,
        namespace: str,
        name: str,
        *,
        resource_version: str,
        holder: str | None,
        duration_seconds: int | None,
        acquire_time: datetime | None,
        renew_time: datetime | None,
        transitions: int,
    ) -> LeaseInfo:
        self.calls += 1
        if self.leases[name].resource_version != resource_version:
            raise Conflict(name)
        return self._put(name, holder, duration_seconds, acquire_time, renew_time, transitions)

    def _put(self, name: str, holder: str | None, duration: int | None, *rest: object) -> LeaseInfo:
        acquire, renew, transitions = rest
        lease = LeaseInfo(
            name=name,
            namespace="ptc",
            resource_version=str(next(self._versions)),
            holder=holder,
            duration_seconds=duration,
            acquire_time=acquire,  # type: ignore[arg-type]
            renew_time=renew,  # type: ignore[arg-type]
            transitions=transitions,  # type: ignore[arg-type]
        )
        self.leases[name] = lease
        return lease

    async def get_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        self.calls += 1
        if name not in self.maps:
            raise NotFound(name)
        data, version = self.maps[name]
        return dict(data), version

    async def write_configmap(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        *,
        resource_version: str | None,
        labels: dict[str, str] | None = None,
    ) -> str:
        self.calls += 1
        current = self.maps.get(name)
        if (current is None) != (resource_version is None) or (
            current is not None and current[1] != resource_version
        ):
            raise Conflict(name)
        version = str(next(self._versions))
        self.maps[name] = (dict(data), version)
        return version


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager_for(api: FakeApi, clock: Clock, on_change: Any = lambda *_: None) -> ShardManager:
    """Replica ptc-a over SHARDS shards: 15 s Leases, 10 s renew deadline, 20 ms between tries."""
    return ShardManager(
        api,  # type: ignore[arg-type]
        ShardSettings(
            namespace="ptc",
            lease_name="ptc-leader",
            shards=SHARDS,
            identity="ptc-a",
            lease_duration=timedelta(seconds=15),
            renew_deadline=timedelta(seconds=10),
            retry_period=timedelta(milliseconds=20),  # real time between attempts
        ),
        on_change=on_change,
        before_handoff=lambda shard: asyncio.sleep(0),
        clock=clock,
    )


async def until(predicate: object, what: str, timeout: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.005)


async def test_a_paused_replica_stops_leading_every_shard_before_any_call() -> None:
    api, clock = FakeApi(), Clock()
    changes: list[tuple[int, bool]] = []
    manager = manager_for(
        api, clock, lambda shard, leading, _holder: changes.append((shard, leading))
    )
    task = asyncio.create_task(manager.run())
    try:
        await until(lambda: manager.led() == [0, 1, 2], "a alone leads every shard")
        assert all((left or 0) > 9 for left in (manager.time_left(i) for i in range(SHARDS)))
        assert sorted(s for s, leading in changes if leading) == [0, 1, 2]
        calls = api.calls
        # The process was frozen for 10 s (its clock moved on, nothing ran meanwhile).
        clock.now += 10.0
        assert manager.led() == []
        assert [manager.time_left(i) for i in range(SHARDS)] == [None] * SHARDS
        assert api.calls == calls  # no call was needed to know it
    finally:
        manager.stop()
        await task


async def test_the_shard_of_a_silent_holder_is_taken_after_the_lease_duration() -> None:
    api, clock = FakeApi(), Clock()
    # ptc-b held shard 1 and went silent: its Lease and heartbeat stop changing.
    api._put("ptc-leader-shard-1", "ptc-b", 15, None, None, 0)
    api.maps["ptc-leader-members"] = ({"ptc-b": "t0"}, "0")
    manager = manager_for(api, clock)
    task = asyncio.create_task(manager.run())
    try:
        # b still counts as live: a takes its fair share of the free shards and no more
        await until(lambda: len(manager.led()) == 2, "a leads the two free shards")
        assert 1 not in manager.led() and manager.members == {"ptc-a", "ptc-b"}
        lease = "ptc-leader-shard-1"

        async def attempts(n: int) -> None:
            seen = api.gets.get(lease, 0)
            await until(lambda: api.gets.get(lease, 0) >= seen + n, f"{n} looks at {lease}")

        await attempts(5)  # five looks later: still b's (its Lease has not expired)
        assert 1 not in manager.led()
        clock.now += 14.0
        await attempts(5)
        assert 1 not in manager.led()  # 14 s of silence is not yet 15
        clock.now += 1.5  # (its own shards lapsed in the jump too, and are simply re-taken)
        await until(lambda: manager.led() == [0, 1, 2], "a to take b's shard")
        assert manager.members == {"ptc-a"}
        assert api.leases["ptc-leader-shard-1"].transitions == 1
    finally:
        manager.stop()
        await task


async def test_a_crashed_shard_election_is_replaced_and_the_shard_led_again() -> None:
    # An elector that raises (a bug, an unexpected answer) must not leave its shard unled by
    # this replica for the life of the process: it is logged and a fresh elector stands by.
    api, clock = FakeApi(), Clock()
    manager = manager_for(api, clock)
    crashing = manager.electors[1]

    async def crash() -> None:
        raise RuntimeError("elector bug")

    crashing.run = crash  # type: ignore[method-assign]
    task = asyncio.create_task(manager.run())
    try:
        await until(lambda: manager.electors[1] is not crashing, "a fresh elector for shard 1")
        await until(lambda: manager.led() == [0, 1, 2], "a to lead every shard, 1 included")
    finally:
        manager.stop()
        await task
