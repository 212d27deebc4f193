"""Traffic generator: kube-proxy-like routing over ready endpoints, rate and endpoint changes."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from controller.sandbox.faults import FaultProfile, FaultProfiles, Latency
from controller.sandbox.traffic import TrafficGenerator
from controller.sandbox.zaiproxy import SimulatedZaiProxy
from tests.sandbox.conftest_pods import FakeClock, make_pod, other_tasks

ROOMY = {"RATE_LIMIT_INITIAL": "100000", "RATE_LIMIT_MAX": "100000", "MAX_WORKERS": "100000"}


class World:
    """Simulated pods keyed by fake IPs, and a mutable ready-endpoint list."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.faults = FaultProfiles(FaultProfile(latency=Latency(0.001, 0.001)))
        self.pods: dict[str, SimulatedZaiProxy] = {}
        self.ready: list[str] = []

    def add(self, ip: str, name: str, deployment: str, *, ready: bool = True) -> None:
        self.pods[ip] = SimulatedZaiProxy.from_pod(
            make_pod(name, env=ROOMY),
            deployment,
            faults=self.faults,
            rng=random.Random(ip),
            clock=self.clock or time.monotonic,
        )
        if ready:
            self.ready.append(ip)

    def generator(self, rate: float = 10.0, tick: float = 0.02) -> TrafficGenerator:
        return TrafficGenerator(lambda: self.ready, self.pods.get, rate=rate, tick=tick, seed=3)


def test_requests_spread_uniformly_over_ready_endpoints() -> None:
    world = World(FakeClock())
    for i in range(4):
        world.add(f"10.0.0.{i}", f"p{i}", "zai-proxy")
    world.add("10.0.0.9", "not-ready", "zai-proxy", ready=False)
    gen = world.generator()
    assert gen.send(40_000) == 40_000
    counts = gen.stats.by_pod
    assert set(counts) == {f"default/p{i}" for i in range(4)}
    for n in counts.values():
        assert n == pytest.approx(10_000, rel=0.04)  # ~4 sigma of a binomial(40000, 1/4)
    assert gen.stats.by_status == {200: 40_000}


def test_share_follows_ready_pod_counts_per_deployment() -> None:
    world = World(FakeClock())
    for i in range(3):
        world.add(f"10.0.1.{i}", f"stable-{i}", "zai-proxy")
    world.add("10.0.2.1", "canary-1", "zai-proxy-v2")
    gen = world.generator()
    gen.send(20_000)
    assert gen.stats.share("zai-proxy-v2") == pytest.approx(0.25, abs=0.02)
    assert (
        gen.stats.deployment_total("zai-proxy") + gen.stats.deployment_total("zai-proxy-v2")
        == 20_000
    )


def test_an_endpoint_change_moves_traffic_at_once() -> None:
    world = World(FakeClock())
    world.add("10.0.0.1", "old", "zai-proxy")
    world.add("10.0.0.2", "new", "zai-proxy-v2", ready=False)
    gen = world.generator()
    gen.send(100)
    world.ready[:] = ["10.0.0.2"]  # the selector flip
    before = gen.reset_stats()
    gen.send(100)
    assert before.by_pod == {"default/old": 100}
    assert gen.stats.by_pod == {"default/new": 100}


def test_no_ready_endpoint_or_nothing_listening_counts_as_refused() -> None:
    world = World(FakeClock())
    gen = world.generator()
    assert gen.send(5) == 0
    world.ready.append("10.9.9.9")  # in the EndpointSlice but no pod listens there
    assert gen.send(5) == 0
    assert (gen.stats.total, gen.stats.refused, gen.stats.failures) == (10, 10, 10)
    assert gen.stats.share("anything") == 0.0


def test_rate_is_paced_by_elapsed_time_and_changes_apply_on_the_next_tick() -> None:
    world = World(FakeClock())
    world.add("10.0.0.1", "p", "d")
    gen = world.generator(rate=100.0)
    assert gen.advance(0.0) == 0  # the first call only sets the origin
    assert gen.advance(1.0) == 100
    gen.rate = 10.0
    assert gen.advance(2.0) == 10
    gen.rate = 3.0
    sent = sum(gen.advance(2.0 + 0.1 * k) for k in range(1, 11))
    assert sent == 3  # fractions carry over between ticks
    gen.rate = 0.0
    assert gen.advance(100.0) == 0
    with pytest.raises(ValueError):
        gen.rate = -1.0


def test_outcomes_are_counted_per_deployment_and_status() -> None:
    world = World(FakeClock())
    world.add("10.0.0.1", "stable", "zai-proxy")
    world.add("10.0.0.2", "canary", "zai-proxy-v2")
    world.faults.set("default", "zai-proxy-v2", FaultProfile(error_502=1.0))
    gen = world.generator()
    gen.send(1000)
    assert set(gen.stats.by_deployment["zai-proxy"]) == {200}
    assert set(gen.stats.by_deployment["zai-proxy-v2"]) == {502}
    assert gen.stats.failures == gen.stats.deployment_total("zai-proxy-v2")
    snapshot = gen.stats.copy()
    gen.send(10)
    assert snapshot.total == 1000


async def test_running_generator_follows_rate_and_endpoint_changes_and_stops_cleanly() -> None:
    world = World()  # real time: the pods use time.monotonic like the loop
    world.add("10.0.0.1", "old", "zai-proxy")
    world.add("10.0.0.2", "new", "zai-proxy-v2", ready=False)
    loop = asyncio.get_running_loop()
    gen = world.generator(rate=400.0, tick=0.01)
    async with gen:
        started = loop.time()
        await gen.wait_for(lambda s: s.total >= 100, timeout=5)
        elapsed = loop.time() - started
        # Pacing follows elapsed loop time, so the count is right whatever the tick jitter.
        assert gen.stats.total == pytest.approx(400 * elapsed, abs=400 * 0.01 + 2)

        world.ready[:] = ["10.0.0.2"]
        await gen.wait_for(lambda s: s.by_pod["default/new"] >= 20, timeout=5)
        old = gen.stats.by_pod["default/old"]
        await gen.wait_for(lambda s: s.by_pod["default/new"] >= 60, timeout=5)
        assert gen.stats.by_pod["default/old"] == old  # none after the flip was seen

        gen.rate = 0.0  # leftover credit is below one request, so nothing more is due
        frozen = gen.stats.total
        with pytest.raises(TimeoutError):
            await gen.wait_for(lambda s: s.total > frozen, timeout=0.2)
        gen.rate = 1000.0
        await gen.wait_for(lambda s: s.total >= frozen + 50, timeout=5)
    assert not gen.running
    assert other_tasks() == set()


async def test_a_failing_endpoint_source_surfaces_on_stop() -> None:
    called = asyncio.Event()

    def broken() -> list[str]:
        called.set()
        raise RuntimeError("EndpointSlice informer gone")

    gen = TrafficGenerator(broken, lambda ip: None, rate=1000.0, tick=0.005)
    gen.start()
    async with asyncio.timeout(5):
        await called.wait()  # the generator's task raised right after setting this
    assert not gen.running
    with pytest.raises(RuntimeError, match="informer gone"):
        await gen.stop()
    assert other_tasks() == set()


def test_keep_alive_clients_stay_on_old_pods_until_they_reconnect() -> None:
    # Issue 15 B: a canary at a quarter of the pods that receives almost none of the requests.
    world = World(FakeClock())
    for i in range(3):
        world.add(f"10.0.7.{i}", f"stable-{i}", "zai-proxy")
    gen = world.generator()
    gen.keep_alive(8)
    gen.send(800)  # every connection opened against stable
    world.add("10.0.7.9", "canary-0", "zai-proxy-v2")
    gen.reset_stats()
    gen.send(4000)
    assert gen.stats.deployment_total("zai-proxy-v2") == 0  # no connection ever reconnected
    # A stable pod leaves the endpoints: only its connections reconnect, spread over the rest.
    world.ready.remove("10.0.7.0")
    gen.reset_stats()
    gen.send(4000)
    assert gen.stats.by_pod["default/stable-0"] == 0
    assert gen.stats.share("zai-proxy-v2") < 0.25 - 0.05
    # Clients that reconnect every few requests are balanced per request again.
    gen.keep_alive(8, requests_per_connection=5)
    gen.reset_stats()
    gen.send(20_000)
    assert gen.stats.share("zai-proxy-v2") == pytest.approx(1 / 3, abs=0.03)


def test_keep_alive_rejects_nonsense() -> None:
    gen = World(FakeClock()).generator()
    with pytest.raises(ValueError, match="connections"):
        gen.keep_alive(-1)
    with pytest.raises(ValueError, match="requests_per_connection"):
        gen.keep_alive(2, requests_per_connection=0)
    assert gen.connections == 0
