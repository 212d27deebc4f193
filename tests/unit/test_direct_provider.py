"""DirectProvider end to end against tiny local HTTP "pods", with a fake clock.

The clock is a number the test moves; the background task's sleep never returns, so every
scrape is one the test asked for (`scrape_once()`) and values are exact. Failure modes (HTTP
errors, refused connections, timeouts, bad bodies, a pods() that raises) each become the
error sample or warning the Provider contract promises, and nothing is left running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from controller.core.config.load import load_config
from controller.core.config.model import Rollout, Side
from controller.shell.providers.direct import TASK_NAME, DirectProvider
from controller.shell.providers.scrape import PodTarget

REPO = Path(__file__).resolve().parents[2]
WINDOW = 10.0


@pytest.fixture(scope="module")
def rollout() -> Rollout:
    base = load_config(REPO / "config" / "zai-proxy.yaml").config.rollout("zai-proxy")
    analysis = base.analysis.model_copy(update={"window": timedelta(seconds=WINDOW)})
    return base.model_copy(update={"analysis": analysis})


@dataclass
class FakePod:
    """What one pod serves: request rates by status, a latency histogram, a rate limit."""

    per_s: dict[str, float] = field(default_factory=lambda: {"200": 9.0, "502": 1.0})
    limit: float = 10.0
    status: int = 200
    body: str | None = None  # served as is when set
    delay: float = 0.0

    def render(self, t: float) -> str:
        lines = ["# TYPE zai_proxy_requests_total counter"]
        for code, rate in self.per_s.items():
            lines.append(
                f'zai_proxy_requests_total{{status_code="{code}",variant="v"}} {rate * t:g}'
            )
        total = sum(self.per_s.values()) * t
        # Every request takes 0.2 s: all in (0.1, 0.25] (filed under 200: the pack times 2xx).
        lines += [
            "# TYPE zai_proxy_request_duration_seconds histogram",
            'zai_proxy_request_duration_seconds_bucket{status_code="200",le="0.1"} 0',
            f'zai_proxy_request_duration_seconds_bucket{{status_code="200",le="0.25"}} {total:g}',
            f'zai_proxy_request_duration_seconds_bucket{{status_code="200",le="+Inf"}} {total:g}',
            f'zai_proxy_request_duration_seconds_count{{status_code="200"}} {total:g}',
            "# TYPE zai_proxy_rate_limit_requests_per_second gauge",
            f"zai_proxy_rate_limit_requests_per_second {self.limit:g}",
        ]
        return "\n".join(lines) + "\n"


class Pods:
    """Local HTTP server: pod `name` serves at /name; the test edits `pods` and `sides`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.pods: dict[str, FakePod] = {}
        self.sides: dict[Side, list[str]] = {s: [] for s in Side}
        self.port = 0
        self.fail_listing = False
        self.hits: dict[str, int] = {}  # scrapes per pod
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{pod}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        name = request.match_info["pod"]
        self.hits[name] = self.hits.get(name, 0) + 1
        pod = self.pods.get(name)
        if pod is None:
            return web.Response(status=404)
        if pod.delay:
            await asyncio.sleep(pod.delay)
        if pod.status != 200:
            return web.Response(status=pod.status, text="oops")
        return web.Response(text=pod.body if pod.body is not None else pod.render(self.clock()))

    def target(self, name: str) -> PodTarget:
        return PodTarget(name, "127.0.0.1", self.port, f"/{name}")

    def __call__(self, rollout: Rollout, side: Side) -> Sequence[PodTarget]:
        if self.fail_listing:
            raise RuntimeError("informer not synced")
        return [self.target(n) for n in self.sides[side]]

    def place(self, canary: list[str], stable: list[str]) -> None:
        self.sides = {Side.CANARY: canary, Side.STABLE: stable, Side.SERVICE: canary + stable}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def never(_: float) -> None:
    await asyncio.Event().wait()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def pods(clock: Clock) -> AsyncIterator[Pods]:
    server = Pods(clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def provider(pods: Pods, clock: Clock) -> AsyncIterator[DirectProvider]:
    p = DirectProvider(
        pods, scrape_interval=timedelta(seconds=1), timeout=1.0, clock=clock, sleep=never
    )
    try:
        yield p
    finally:
        await p.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == TASK_NAME and not t.done()]


async def run_for(provider: DirectProvider, clock: Clock, until: float) -> None:
    """Scrape every second from the clock's now up to `until` (inclusive)."""
    while clock.now < until:
        clock.now += 1
        await provider.scrape_once()


def standard_world(pods: Pods) -> None:
    pods.pods = {
        "canary-a": FakePod({"200": 8, "429": 1, "502": 1}, limit=7),
        "canary-b": FakePod({"200": 18, "502": 2}, limit=5),
        "stable-a": FakePod({"200": 29, "429": 1}, limit=50),
    }
    pods.place(["canary-a", "canary-b"], ["stable-a"])


async def test_measure_and_capacity_match_the_promql_arithmetic(
    provider: DirectProvider, pods: Pods, clock: Clock, rollout: Rollout
) -> None:
    standard_world(pods)
    first = await provider.measure(rollout, rollout.analysis)
    # One scrape so far: counters need two in the window -> no data, zero requests.
    assert first["server-error-ratio"].canary.value is None
    assert first["server-error-ratio"].canary.requests == 0.0
    gate = rollout.analysis.capacity_gate
    assert gate is not None
    capacity, _ = await provider.capacity(rollout, gate, timedelta(seconds=WINDOW))
    assert capacity.value == 12.0  # gauges answer from the first scrape: 7 + 5

    await run_for(provider, clock, 10)  # samples at t=0..10 fill the 10 s window exactly
    m = await provider.measure(rollout, rollout.analysis)
    # Canary: 30 req/s of which 3 are 502 and 1 is 429; stable: 30 req/s, 1 of them 429.
    bad = m["server-error-ratio"]
    assert bad.canary.value == pytest.approx(3 / 30)
    assert bad.canary.requests == pytest.approx(300)
    assert bad.stable is not None and bad.stable.value == 0.0
    limited = m["rate-limited-ratio"]
    assert limited.canary.value == pytest.approx(1 / 30)
    assert limited.stable is not None and limited.stable.value == pytest.approx(1 / 30)
    # All requests in (0.1, 0.25]: p95 = 0.1 + 0.15 x 0.95.
    p95 = m["p95-latency"]
    assert p95.canary.value == pytest.approx(0.1 + 0.15 * 0.95)
    assert p95.canary.requests == pytest.approx(300)

    capacity, demand = await provider.capacity(rollout, gate, timedelta(seconds=WINDOW))
    assert capacity.value == 12.0
    assert demand.value == pytest.approx(60.0)  # the whole Service: 30 + 30 req/s
    assert demand.requests == pytest.approx(600)


async def test_each_pod_is_scraped_once_per_interval_for_all_rollouts_reading_it(
    provider: DirectProvider, pods: Pods, clock: Clock, rollout: Rollout
) -> None:
    standard_world(pods)
    readers = [rollout.model_copy(update={"name": f"reader-{i}"}) for i in range(5)]
    await asyncio.gather(*(provider.measure(r, r.analysis) for r in readers))
    assert pods.hits == {"canary-a": 1, "canary-b": 1, "stable-a": 1}
    pods.pods["canary-c"] = FakePod()
    pods.place(["canary-a", "canary-b", "canary-c"], ["stable-a"])
    newcomer = rollout.model_copy(update={"name": "newcomer"})
    await provider.measure(newcomer, newcomer.analysis)  # only its pod nobody scraped yet
    assert pods.hits == {"canary-a": 1, "canary-b": 1, "stable-a": 1, "canary-c": 1}
    await run_for(provider, clock, 1)  # the cycle scrapes every pod once for all readers
    assert pods.hits == {"canary-a": 2, "canary-b": 2, "stable-a": 2, "canary-c": 2}


async def test_task_starts_lazily_and_close_stops_everything(
    pods: Pods, clock: Clock, rollout: Rollout
) -> None:
    standard_world(pods)
    provider = DirectProvider(pods, clock=clock, sleep=never)
    assert not provider.running
    await provider.measure(rollout, rollout.analysis)
    assert provider.running
    assert provider.history(pods.target("canary-a")) is not None  # scraped once already
    await provider.close()
    assert not provider.running
    assert not [t for t in asyncio.all_tasks() if t.get_name() == TASK_NAME and not t.done()]
    after = await provider.measure(rollout, rollout.analysis)
    assert after["server-error-ratio"].canary.error == "provider is closed"
    await provider.close()  # twice is fine


async def test_close_during_the_first_scrape_leaves_nothing_running(
    pods: Pods, clock: Clock, rollout: Rollout
) -> None:
    standard_world(pods)
    pods.pods["canary-a"].delay = 0.5
    provider = DirectProvider(pods, clock=clock, sleep=never)
    measuring = asyncio.create_task(provider.measure(rollout, rollout.analysis))
    await asyncio.sleep(0.1)  # the first scrape is waiting for canary-a
    await provider.close()
    m = await asyncio.wait_for(measuring, timeout=5)
    assert not provider.running
    assert m["server-error-ratio"].canary.value is None
    assert not [t for t in asyncio.all_tasks() if t.get_name() == TASK_NAME and not t.done()]


async def test_background_task_scrapes_on_its_own(pods: Pods, rollout: Rollout) -> None:
    standard_world(pods)
    cycles = 0
    enough = asyncio.Event()

    async def sleep(seconds: float) -> None:
        nonlocal cycles
        cycles += 1
        if cycles > 3:
            enough.set()
        await asyncio.sleep(seconds)

    provider = DirectProvider(pods, scrape_interval=timedelta(milliseconds=50), sleep=sleep)
    try:
        await provider.measure(rollout, rollout.analysis)
        await asyncio.wait_for(enough.wait(), timeout=5)
        history = provider.history(pods.target("canary-a"))
        assert history is not None
        (limit,) = history.by_metric["zai_proxy_rate_limit_requests_per_second"].values()
        assert len(limit.points) >= 3  # the first scrape, then one per finished cycle
    finally:
        await provider.close()


async def test_raw_query_is_an_error_sample(
    provider: DirectProvider, pods: Pods, rollout: Rollout
) -> None:
    standard_world(pods)
    analysis = rollout.analysis.model_copy(
        update={
            "metrics": [
                rollout.analysis.metrics[0].model_copy(
                    update={"counter_ratio": None, "query": "sum(rate(x[1m]))"}
                )
            ]
        }
    )
    (m,) = (await provider.measure(rollout, analysis)).values()
    assert m.canary.value is None
    assert m.canary.error is not None
    assert m.canary.error.startswith("the direct provider evaluates structured metrics only: ")
    assert m.stable is not None and m.stable.error == m.canary.error


async def test_all_pods_of_a_side_failing_is_an_error_some_failing_a_warning(
    provider: DirectProvider, pods: Pods, clock: Clock, rollout: Rollout
) -> None:
    standard_world(pods)
    await provider.measure(rollout, rollout.analysis)
    await run_for(provider, clock, 10)
    pods.pods["canary-a"].status = 503
    await run_for(provider, clock, 11)
    with capture_logs() as logs:
        m = await provider.measure(rollout, rollout.analysis)
    # canary-b alone: 2 of 20 req/s are 502 (canary-a's history still counts for its rate).
    assert m["server-error-ratio"].canary.error is None
    assert m["server-error-ratio"].canary.value is not None
    warnings = [e for e in logs if "some pods' scrapes fail" in e["event"]]
    assert warnings and warnings[0]["failing"] == {
        "canary-a": f"http://127.0.0.1:{pods.port}/canary-a: HTTP 503"
    }

    pods.pods["canary-b"].body = 'zai_proxy_requests_total{status_code="200" 5\n'
    await run_for(provider, clock, 12)
    m = await provider.measure(rollout, rollout.analysis)
    error = m["server-error-ratio"].canary.error
    assert error is not None and error.startswith("scrape failed: all 2 canary pod(s): ")
    assert "HTTP 503" in error and "invalid exposition: line 1: expected ',' or '}'" in error
    assert m["server-error-ratio"].stable is not None
    assert m["server-error-ratio"].stable.error is None  # stable is unaffected
    gate = rollout.analysis.capacity_gate
    assert gate is not None
    capacity, demand = await provider.capacity(rollout, gate, timedelta(seconds=WINDOW))
    assert capacity.error is not None and capacity.error.startswith("scrape failed: ")
    assert demand.error is None  # the Service side still has stable-a

    pods.pods["canary-a"].status = 200
    pods.pods["canary-b"].body = None
    with capture_logs() as logs:
        await run_for(provider, clock, 13)
    assert sum("scrape recovered" in e["event"] for e in logs) == 2


async def test_refused_connection_and_timeout(pods: Pods, clock: Clock, rollout: Rollout) -> None:
    standard_world(pods)
    pods.pods["canary-b"].delay = 2.0
    closed_port = PodTarget("gone", "127.0.0.1", 1, "/metrics")

    def targets(r: Rollout, side: Side) -> list[PodTarget]:
        listed = pods(r, side)
        return [closed_port, *listed] if side is Side.CANARY else list(listed)

    provider = DirectProvider(targets, timeout=0.2, clock=clock, sleep=never)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await provider.measure(rollout, rollout.analysis)
        assert loop.time() - started < 1.5  # bounded by the per-request timeout
        gone = provider.history(closed_port)
        slow = provider.history(pods.target("canary-b"))
        assert gone is not None and gone.last_error is not None
        assert "cannot connect" in gone.last_error
        assert slow is not None and slow.last_error is not None
        assert "no complete answer within 0.2s" in slow.last_error
    finally:
        await provider.close()


async def test_oversized_body_fails_the_scrape(pods: Pods, clock: Clock, rollout: Rollout) -> None:
    standard_world(pods)
    provider = DirectProvider(pods, clock=clock, sleep=never, max_body_bytes=100)
    try:
        await provider.measure(rollout, rollout.analysis)
        history = provider.history(pods.target("canary-a"))
        assert history is not None and history.last_error is not None
        assert "body over 100 bytes" in history.last_error
    finally:
        await provider.close()


async def test_listing_pods_fails(
    provider: DirectProvider, pods: Pods, clock: Clock, rollout: Rollout
) -> None:
    standard_world(pods)
    await provider.measure(rollout, rollout.analysis)
    pods.fail_listing = True
    await run_for(provider, clock, 2)  # the scrape loop keeps the members it knew
    m = await provider.measure(rollout, rollout.analysis)
    assert m["server-error-ratio"].canary.error == (
        "cannot list the canary pods: RuntimeError: informer not synced"
    )


async def test_a_pod_that_left_counts_for_its_window_then_is_forgotten(
    provider: DirectProvider, pods: Pods, clock: Clock, rollout: Rollout
) -> None:
    standard_world(pods)
    await provider.measure(rollout, rollout.analysis)
    await run_for(provider, clock, 10)
    gate = rollout.analysis.capacity_gate
    assert gate is not None
    pods.place(["canary-b"], ["stable-a"])  # canary-a is deleted at t=10
    del pods.pods["canary-a"]
    await run_for(provider, clock, 12)
    capacity, _ = await provider.capacity(rollout, gate, timedelta(seconds=WINDOW))
    assert capacity.value == 5.0  # its gauge is gone at once
    m = await provider.measure(rollout, rollout.analysis)
    # Its 502s still count: canary-a 1/s of 10/s, canary-b 2/s of 20/s (both still ~10%).
    assert m["server-error-ratio"].canary.value == pytest.approx(0.1, abs=0.01)
    assert m["server-error-ratio"].canary.requests is not None
    assert m["server-error-ratio"].canary.requests > 200 + 5 * 10  # canary-b + canary-a's part
    await run_for(provider, clock, 10 + WINDOW + 4 * 1 + 1)
    assert provider.history(pods.target("canary-a")) is None  # past window + margin
    m = await provider.measure(rollout, rollout.analysis)
    assert m["server-error-ratio"].canary.requests == pytest.approx(200)


async def test_idle_rollouts_stop_being_scraped(pods: Pods, clock: Clock, rollout: Rollout) -> None:
    standard_world(pods)
    provider = DirectProvider(pods, clock=clock, sleep=never, idle_after=timedelta(seconds=30))
    try:
        await provider.measure(rollout, rollout.analysis)
        clock.now = 29
        await provider.scrape_once()
        assert provider.history(pods.target("canary-a")) is not None
        clock.now = 31  # 31 s since the last question > max(30 s, 3 windows)
        await provider.scrape_once()
        assert provider.history(pods.target("canary-a")) is None
    finally:
        await provider.close()


def test_pod_target_urls() -> None:
    assert PodTarget("p", "10.0.0.1", 8080).url == "http://10.0.0.1:8080/metrics"
    assert PodTarget("p", "fd00::1", 9090, "m").url == "http://[fd00::1]:9090/m"
    assert PodTarget("p", "fd00::1", 9090).instance == "[fd00::1]:9090"
    assert PodTarget("p", "1.2.3.4", 1, labels={"a": "b"}) == PodTarget("p", "1.2.3.4", 1)


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        DirectProvider(lambda r, s: [], scrape_interval=timedelta(0))
