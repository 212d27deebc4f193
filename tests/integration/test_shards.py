"""Sharded leadership against the sandbox API server: spread, per-shard fencing, hand-over.

Each replica is a :class:`ShardManager` with its own API connection, like separate pods. An
exclusivity monitor samples every replica's ``is_leader(shard)`` every few milliseconds and fails
on the first instant two replicas claim the same shard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from controller.sandbox.apiserver import ApiServer
from controller.shell.kube import Kube, NotLeader
from controller.shell.shards import ShardManager, ShardSettings
from tests.integration.conftest import FAST

NS = "ptc"
SHARDS = 4
LEASE_DURATION = 1.0  # fast timings, as tests/integration/test_leader.py
SLACK = 1.5  # retry periods, a request and loop noise on a busy machine


class Replica:
    def __init__(self, name: str, kube: Kube) -> None:
        self.name = name
        self.kube = kube
        self.handoffs: list[int] = []
        self.changes: list[tuple[int, bool]] = []
        self.manager = ShardManager(
            kube,
            ShardSettings(
                namespace=NS,
                lease_name="ptc-leader",
                shards=SHARDS,
                identity=name,
                lease_duration=timedelta(seconds=LEASE_DURATION),
                renew_deadline=timedelta(seconds=0.6),
                retry_period=timedelta(seconds=0.1),
            ),
            on_change=lambda shard, leading, _holder: self.changes.append((shard, leading)),
            before_handoff=self._before_handoff,
        )
        self.task: asyncio.Task[None] | None = None

    async def _before_handoff(self, shard: int) -> None:
        assert self.manager.is_leader(shard)  # still ours while its reconcilers stop
        self.handoffs.append(shard)

    def start(self) -> None:
        self.task = asyncio.create_task(self.manager.run(), name=f"ptc-shards-{self.name}")

    def led(self) -> list[int]:
        return self.manager.led()


class Cluster:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.replicas: list[Replica] = []
        self.violations: list[str] = []

    async def replica(self, name: str) -> Replica:
        r = Replica(name, await Kube.connect(str(self.kubeconfig), policy=FAST))
        self.replicas.append(r)
        r.start()
        return r

    def check(self) -> None:
        for shard in range(SHARDS):
            leaders = [r.name for r in self.replicas if r.manager.is_leader(shard)]
            if len(leaders) > 1:
                self.violations.append(f"shard {shard}: {leaders} all leading")

    async def watch(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(0.002)

    async def until(self, predicate: object, timeout: float, what: str) -> float:
        """Seconds until ``predicate()`` holds; fails at the deadline (polled, never slept on)."""
        assert callable(predicate)
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"timed out waiting for {what}: {[(r.name, r.led()) for r in self.replicas]}"
                )
            await asyncio.sleep(0.01)
        return time.monotonic() - start


@pytest.fixture
async def cluster(kubeconfig: Path) -> AsyncIterator[Cluster]:
    c = Cluster(kubeconfig)
    monitor = asyncio.create_task(c.watch(), name="ptc-shard-monitor")
    try:
        yield c
    finally:
        monitor.cancel()
        for r in c.replicas:
            r.manager.stop()
        await asyncio.gather(
            *(r.task for r in c.replicas if r.task is not None), return_exceptions=True
        )
        for r in c.replicas:
            await r.kube.close()
    assert not c.violations, c.violations[:5]


def spread(cluster: Cluster, replicas: int) -> bool:
    counts = sorted(len(r.led()) for r in cluster.replicas)
    return sum(counts) == SHARDS and counts[-1] - counts[0] <= 1 and len(counts) == replicas


async def test_two_replicas_split_the_shards_and_writes_are_fenced_per_shard(
    cluster: Cluster, api_server: ApiServer
) -> None:
    a = await cluster.replica("ptc-a")
    await cluster.until(lambda: len(a.led()) == SHARDS, 10, "a alone to lead every shard")
    b = await cluster.replica("ptc-b")
    # a sees b's heartbeat, hands two shards off (stopping their work first), b takes them
    await cluster.until(lambda: spread(cluster, 2), 15, "two shards each")
    assert len(a.handoffs) == 2 and set(a.handoffs) == set(b.led()), (a.handoffs, b.led())
    # A write for a rollout of b's shard, sent by a, is refused before it leaves a; a's own
    # shard's writes go through. Same connection, a different fence per shard.
    ours, theirs = a.led()[0], b.led()[0]
    with pytest.raises(NotLeader):
        await a.kube.fenced_by(lambda: a.manager.time_left(theirs)).write_configmap(
            NS, "x", {}, resource_version=None
        )
    await a.kube.fenced_by(lambda: a.manager.time_left(ours)).write_configmap(
        NS, "x", {"k": "v"}, resource_version=None
    )
    assert api_server.get("ConfigMap", "x", NS)["data"] == {"k": "v"}
    # each holder is on its Lease, and the heartbeat names both
    for shard in range(SHARDS):
        holder = api_server.get("Lease", f"ptc-leader-shard-{shard}", NS)["spec"]["holderIdentity"]
        assert holder == ("ptc-a" if shard in a.led() else "ptc-b")
    assert set(api_server.get("ConfigMap", "ptc-leader-members", NS)["data"]) == {"ptc-a", "ptc-b"}


async def test_a_dead_replicas_shards_move_within_the_lease_duration(cluster: Cluster) -> None:
    a = await cluster.replica("ptc-a")
    b = await cluster.replica("ptc-b")
    c = await cluster.replica("ptc-c")
    await cluster.until(lambda: spread(cluster, 3), 20, "the shards spread over three")
    victim = max((a, b, c), key=lambda r: len(r.led()))
    lost = victim.led()
    # Dies without a word: no release, its Leases and heartbeat just stop.
    victim.manager.stop()
    assert victim.task is not None
    await victim.task
    cluster.replicas.remove(victim)
    took = await cluster.until(
        lambda: sorted(s for r in cluster.replicas for s in r.led()) == list(range(SHARDS)),
        10,
        "the survivors to lead every shard",
    )
    assert took < LEASE_DURATION + SLACK, took
    counts = sorted(len(r.led()) for r in cluster.replicas)
    assert counts == [2, 2], (counts, lost)


async def test_a_released_shard_moves_at_once(cluster: Cluster) -> None:
    a = await cluster.replica("ptc-a")
    b = await cluster.replica("ptc-b")
    await cluster.until(lambda: spread(cluster, 2), 15, "two shards each")
    leaving = a.led()
    started = time.monotonic()
    await a.manager.release_all()  # a clean shutdown gives its Leases up and leaves
    assert a.led() == []
    await cluster.until(lambda: sorted(b.led()) == list(range(SHARDS)), 5, "b to take them")
    # released Leases need no expiry: well under a lease duration
    assert time.monotonic() - started < LEASE_DURATION, leaving
