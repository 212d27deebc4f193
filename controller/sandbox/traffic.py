"""Traffic generator: R requests/s "through the Service", routed like kube-proxy.

Each request goes to a uniformly random Ready endpoint of the Service (the endpoint source is
a callable returning the current ready pod IPs, e.g. read from the EndpointSlice) and is
dispatched in-process to the simulated pod at that IP. The generator ticks on the event-loop
clock in small slices, re-reading the endpoints and the rate each tick, so both changes apply
within one tick. A request with no ready endpoint, or to an IP where no pod listens, counts as
refused (like a connection refused).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

EndpointSource = Callable[[], Sequence[str]]


class RequestTarget(Protocol):
    """What the generator needs from a simulated pod."""

    namespace: str
    name: str
    deployment: str

    def handle(self, method: str = ..., path: str = ...) -> HasStatus:
        """Serve one request now."""
        ...


class HasStatus(Protocol):
    """A request outcome with an HTTP status."""

    @property
    def status(self) -> int:
        """Final HTTP status code."""
        ...


PodResolver = Callable[[str], RequestTarget | None]


@dataclass
class TrafficStats:
    """Outcome counts since the last reset."""

    total: int = 0
    refused: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_pod: Counter[str] = field(default_factory=Counter)  # "namespace/name"
    by_deployment: dict[str, Counter[int]] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        """Refused requests plus every non-2xx answer."""
        return self.refused + sum(n for s, n in self.by_status.items() if not 200 <= s < 300)

    def deployment_total(self, deployment: str) -> int:
        """Requests answered by one Deployment's pods."""
        return sum(self.by_deployment.get(deployment, Counter()).values())

    def share(self, deployment: str) -> float:
        """Fraction of answered requests served by one Deployment (0 when nothing answered)."""
        answered = self.total - self.refused
        return self.deployment_total(deployment) / answered if answered else 0.0

    def copy(self) -> TrafficStats:
        """An independent snapshot."""
        return TrafficStats(
            total=self.total,
            refused=self.refused,
            by_status=Counter(self.by_status),
            by_pod=Counter(self.by_pod),
            by_deployment={k: Counter(v) for k, v in self.by_deployment.items()},
        )


class TrafficGenerator:
    """Sends `rate` requests/s to uniformly random ready endpoints; start/stop on the loop."""

    def __init__(
        self,
        endpoints: EndpointSource,
        resolve: PodResolver,
        *,
        rate: float = 10.0,
        tick: float = 0.02,
        seed: int | None = None,
        method: str = "POST",
        path: str = "/v1/messages",
        name: str = "traffic",
    ) -> None:
        if tick <= 0:
            raise ValueError("tick must be positive")
        self._endpoints = endpoints
        self._resolve = resolve
        self._rate = 0.0
        self.rate = rate
        self.tick = tick
        self.method = method
        self.path = path
        self.name = name
        self.stats = TrafficStats()
        self._rng = random.Random(seed)
        self._credit = 0.0  # fractional requests carried between ticks
        self._last: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress: asyncio.Event | None = None  # set after each send, for wait_for

    @property
    def rate(self) -> float:
        """Requests per second; setting it applies from the next tick."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"rate must be >= 0, got {value}")
        self._rate = float(value)

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    def reset_stats(self) -> TrafficStats:
        """Return the stats so far and start counting afresh."""
        old, self.stats = self.stats, TrafficStats()
        return old

    def send(self, count: int) -> int:
        """Send `count` requests now to random ready endpoints; return how many were answered."""
        if count <= 0:
            return 0
        try:
            return self._send(count)
        finally:
            if self._progress is not None:
                self._progress.set()
                self._progress = None

    def _send(self, count: int) -> int:
        ips = list(self._endpoints())
        stats = self.stats
        stats.total += count
        if not ips:
            stats.refused += count
            return 0
        answered = 0
        choice = self._rng.choice
        for _ in range(count):
            target = self._resolve(choice(ips))
            if target is None:
                stats.refused += 1
                continue
            status = target.handle(self.method, self.path).status
            answered += 1
            stats.by_status[status] += 1
            stats.by_pod[f"{target.namespace}/{target.name}"] += 1
            per_deployment = stats.by_deployment.get(target.deployment)
            if per_deployment is None:
                per_deployment = stats.by_deployment[target.deployment] = Counter()
            per_deployment[status] += 1
        return answered

    def advance(self, now: float) -> int:
        """Send the requests due between the previous call and `now`; return how many."""
        if self._last is None:
            self._last = now
            return 0
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._credit += elapsed * self._rate
        due = int(self._credit)
        self._credit -= due
        self.send(due)
        return due

    def start(self) -> None:
        """Start sending in a background task on the running loop."""
        if self.running:
            return
        loop = asyncio.get_running_loop()
        self._last = None
        self.advance(loop.time())
        self._task = loop.create_task(self._run(loop), name=f"traffic-generator:{self.name}")
        self._task.add_done_callback(self._report_crash)

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        # Say so at once; stop() re-raises the error too, but that may be much later.
        if not task.cancelled() and task.exception() is not None:
            log.error("traffic generator %s stopped", self.name, exc_info=task.exception())

    async def stop(self) -> None:
        """Stop the background task and wait until it has ended."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Swallow only the generator's own cancellation, never our caller's.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def __aenter__(self) -> TrafficGenerator:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.advance(loop.time())

    async def wait_for(
        self,
        predicate: Callable[[TrafficStats], bool],
        timeout: float,
    ) -> TrafficStats:
        """Wait until `predicate(stats)` holds after some tick; TimeoutError after `timeout` s."""
        async with asyncio.timeout(timeout):
            while not predicate(self.stats):
                if self._progress is None:
                    self._progress = asyncio.Event()
                await self._progress.wait()
        return self.stats
