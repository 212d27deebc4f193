"""Traffic generator: R requests/s "through the Service", routed like kube-proxy.

Each request goes to a uniformly random Ready endpoint of the Service (the endpoint source is
a callable returning the ready pod IPs as the clients see them: the sandbox's world gives a view
that lags the EndpointSlice like kube-proxy does) and is dispatched in-process to the simulated
pod at that IP. The generator ticks on the event-loop clock in small slices, re-reading the
endpoints and the rate each tick, so both changes apply within one tick.

Client-visible connection failures are counted apart from HTTP statuses: a request with no ready
endpoint, or to an IP where no pod listens (it exited), is *refused*; a request still in flight
when its pod exits (``pod_exited``) is *reset*, and its answer is taken back out of the status
counts. Both are *dropped* requests, attributed to the pod and Deployment where known.

Keep-alive mode (``connections`` > 0) models clients that reuse connections: each request goes
over one of a pool of client connections, and a connection stays on the endpoint it first
reached until it reconnects - after ``requests_per_connection`` requests (None: never), or when
its endpoint leaves the ready list (the pod closes it on shutdown). New pods then receive only
the connections that happen to reconnect, so a canary's share of requests can stay far below
its share of pods, as behind kube-proxy's per-connection balancing.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from controller.tasks import cancel_and_wait

log = logging.getLogger(__name__)

EndpointSource = Callable[[], Sequence[str]]
K = TypeVar("K")


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

    @property
    def latency(self) -> float:
        """Seconds until the answer is complete."""
        ...


class PodIdentity(Protocol):
    """Which pod (and Deployment) an address belonged to."""

    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def deployment(self) -> str: ...


PodResolver = Callable[[str], RequestTarget | None]
PodIdentifier = Callable[[str], PodIdentity | None]


@dataclass
class TrafficStats:
    """Outcome counts since the last reset."""

    total: int = 0
    refused: int = 0  # no ready endpoint, or nothing listening at the endpoint
    reset: int = 0  # in flight when the pod exited
    by_status: Counter[int] = field(default_factory=Counter)
    by_pod: Counter[str] = field(default_factory=Counter)  # "namespace/name"
    by_deployment: dict[str, Counter[int]] = field(default_factory=dict)
    dropped_by_pod: Counter[str] = field(default_factory=Counter)  # refused or reset
    dropped_by_deployment: Counter[str] = field(default_factory=Counter)

    @property
    def dropped(self) -> int:
        """Client-visible connection failures: refused plus reset."""
        return self.refused + self.reset

    @property
    def failures(self) -> int:
        """Dropped requests plus every non-2xx answer."""
        return self.dropped + sum(n for s, n in self.by_status.items() if not 200 <= s < 300)

    def deployment_total(self, deployment: str) -> int:
        """Requests answered by one Deployment's pods."""
        return sum(self.by_deployment.get(deployment, Counter()).values())

    def share(self, deployment: str) -> float:
        """Fraction of answered requests served by one Deployment (0 when nothing answered)."""
        answered = self.total - self.dropped
        return self.deployment_total(deployment) / answered if answered else 0.0

    def copy(self) -> TrafficStats:
        """An independent snapshot."""
        return TrafficStats(
            total=self.total,
            refused=self.refused,
            reset=self.reset,
            by_status=Counter(self.by_status),
            by_pod=Counter(self.by_pod),
            by_deployment={k: Counter(v) for k, v in self.by_deployment.items()},
            dropped_by_pod=Counter(self.dropped_by_pod),
            dropped_by_deployment=Counter(self.dropped_by_deployment),
        )

    def _drop(self, who: PodIdentity | None, ip: str | None) -> None:
        if who is not None:
            self.dropped_by_pod[f"{who.namespace}/{who.name}"] += 1
            self.dropped_by_deployment[who.deployment] += 1
        elif ip is not None:
            self.dropped_by_pod[ip] += 1

    def _take_back(self, pod: str, deployment: str, status: int) -> None:
        """Remove one answer from the status counts (it was cut off before it completed)."""
        _decrement(self.by_status, status)
        _decrement(self.by_pod, pod)
        _decrement(self.by_deployment.get(deployment, Counter()), status)


def _decrement(counter: Counter[K], key: K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


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
        identify: PodIdentifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        connections: int = 0,
        requests_per_connection: int | None = None,
    ) -> None:
        if tick <= 0:
            raise ValueError("tick must be positive")
        self._connections: list[str | None] = []
        self._used: list[int] = []
        self.keep_alive(connections, requests_per_connection)
        self._endpoints = endpoints
        self._resolve = resolve
        self._identify = identify or (lambda ip: None)
        self._clock = clock
        # per pod ("namespace/name"): (completion time, status, deployment) of answers in flight
        self._in_flight: dict[str, list[tuple[float, int, str]]] = {}
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

    def keep_alive(self, connections: int, requests_per_connection: int | None = None) -> None:
        """Use a pool of `connections` keep-alive connections (0: balance every request).

        Connections open afresh (on the next request over each), as after a client restart.
        """
        if connections < 0:
            raise ValueError(f"connections must be >= 0, got {connections}")
        if requests_per_connection is not None and requests_per_connection < 1:
            raise ValueError(f"requests_per_connection must be >= 1, got {requests_per_connection}")
        self.requests_per_connection = requests_per_connection
        self._connections = [None] * connections
        self._used = [0] * connections

    @property
    def connections(self) -> int:
        """Size of the keep-alive pool; 0 when every request is balanced on its own."""
        return len(self._connections)

    def _pick(self, ips: Sequence[str], ready: frozenset[str]) -> str:
        """The endpoint of the next request: random, or its connection's pinned one."""
        if not self._connections:
            return self._rng.choice(ips)
        i = self._rng.randrange(len(self._connections))
        ip = self._connections[i]
        limit = self.requests_per_connection
        if ip is None or ip not in ready or (limit is not None and self._used[i] >= limit):
            ip = self._connections[i] = self._rng.choice(ips)
            self._used[i] = 0
        self._used[i] += 1
        return ip

    def reset_stats(self) -> TrafficStats:
        """Return the stats so far and start counting afresh."""
        old, self.stats = self.stats, TrafficStats()
        self._in_flight.clear()  # their answers were counted in the old stats
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
        ready = frozenset(ips)
        now = self._clock()
        for _ in range(count):
            ip = self._pick(ips, ready)
            target = self._resolve(ip)
            if target is None:
                stats.refused += 1
                stats._drop(self._identify(ip), ip)
                continue
            outcome = target.handle(self.method, self.path)
            status = outcome.status
            answered += 1
            pod = f"{target.namespace}/{target.name}"
            stats.by_status[status] += 1
            stats.by_pod[pod] += 1
            per_deployment = stats.by_deployment.get(target.deployment)
            if per_deployment is None:
                per_deployment = stats.by_deployment[target.deployment] = Counter()
            per_deployment[status] += 1
            if outcome.latency > 0:
                heap = self._in_flight.setdefault(pod, [])
                while heap and heap[0][0] <= now:
                    heapq.heappop(heap)
                heapq.heappush(heap, (now + outcome.latency, status, target.deployment))
        return answered

    def pod_exited(self, pod: PodIdentity) -> int:
        """The pod's process exited now: its requests still in flight become resets; how many."""
        key = f"{pod.namespace}/{pod.name}"
        heap = self._in_flight.pop(key, [])
        now = self._clock()
        cut = [(status, deployment) for done, status, deployment in heap if done > now]
        stats = self.stats
        for status, deployment in cut:
            stats._take_back(key, deployment, status)
            stats.reset += 1
            stats._drop(pod, None)
        return len(cut)

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
        await cancel_and_wait(task)

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
