"""A simulated zai-proxy pod: worker cap, adaptive limiter, retries against a faulty upstream.

Modelled on the real proxy (jedarden/zai-proxy: `proxy/handler.go`, `proxy/zai_error.go`,
`proxy/metrics.go`, `proxy/main.go`, `proxy/ratelimiter_state.go`) and checked against what the
real binary did (research note on the real binary). One request is one synchronous call to
`SimulatedZaiProxy.handle()` at the injected clock's "now"; nothing sleeps, so a traffic
generator can drive hundreds of pods cheaply. Per request, as in `ProxyHandler.ServeHTTP`:

1. more than MAX_WORKERS requests in flight -> 503 "Service at capacity" at once, counted in
   `requests_total` and `rate_limit_rejections_total`, never in the duration histogram;
2. each upstream attempt first waits for a limiter token, unboundedly and FIFO (a pod asked for
   more than its limit queues, its latency grows, and its workers fill up until it answers
   503s - as the real one does); the wait is observed in `rate_limit_wait_seconds`;
3. each attempt draws the upstream's answer from the (namespace, Deployment) fault profile,
   and the proxy's retry policy (`controller.sandbox.retries`) decides what happens next.

The whole course of a request is computed on arrival, but each effect - an upstream error, a
retry, a limiter event, the final `requests_total` and duration - is applied at its own time
on the clock (`_settle`), so a limiter window closes on the events inside it and a pod that
exits before a request completes never counts it. Retry waits are scaled by
`ProxyTuning.retry_backoff` (1.0 = real seconds). Retries take their limiter token when the
request is admitted rather than when they start (a reservation made early): the same tokens
per second, a little sooner.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from controller.sandbox.exposition import Counter, Histogram, render
from controller.sandbox.faults import FaultProfiles
from controller.sandbox.proxyconfig import (
    DEFAULT_PORT,
    DEFAULT_STATE_FILE,
    DEFAULT_VARIANT,
    ProxyConfig,
    ProxyTuning,
    image_tag,
    proxy_container,
)
from controller.sandbox.ratelimiter import AdaptiveRateLimiter, Clock, StateFile
from controller.sandbox.retries import CAPACITY_BODY, Event, trace_request
from controller.sandbox.zaimetrics import DURATION_BUCKETS, ZaiMetrics, client_bucket

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_STATE_FILE",
    "DEFAULT_VARIANT",
    "DURATION_BUCKETS",
    "Outcome",
    "ProxyConfig",
    "ProxyTuning",
    "SimulatedZaiProxy",
    "go_json",
    "image_tag",
    "proxy_container",
]

DEFAULT_CLIENT = "127.0.0.1"


@dataclass(frozen=True)
class Outcome:
    """Final result of one simulated request, as its client gets it."""

    status: int
    latency: float
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""  # the proxy's own error text; "" where the upstream's body is passed on
    attempts: int = 0  # upstream attempts made


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    client: str  # the `client` label (source-NN)


class SimulatedZaiProxy:
    """One zai-proxy process: request handling, /health, /metrics, the admin reset."""

    def __init__(
        self,
        config: ProxyConfig,
        *,
        namespace: str,
        name: str,
        deployment: str,
        faults: FaultProfiles | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        state_file: StateFile | None = None,
    ) -> None:
        self.config = config
        self.namespace = namespace
        self.name = name
        self.deployment = deployment
        self.faults = faults or FaultProfiles()
        self._limiter = AdaptiveRateLimiter(config.limiter, clock, state_file)
        self.metrics = ZaiMetrics()
        self._clock = clock
        self._rng = rng or random.Random()
        self._wall_offset = time.time() - clock()
        self._in_flight: list[float] = []  # completion times, a min-heap
        self._pending: list[tuple[float, int, Event, _Request]] = []  # effects, by time
        self._seq = itertools.count()
        self._seen_request = False
        c = config
        self.metrics.build_info.set((c.version, c.variant, c.commit, c.build_time), 1)
        self.metrics.max_workers.set((c.variant,), c.max_workers)

    @classmethod
    def from_pod(
        cls,
        pod: Mapping[str, Any],
        deployment: str,
        *,
        faults: FaultProfiles | None = None,
        tuning: ProxyTuning | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        state_file: StateFile | None = None,
    ) -> SimulatedZaiProxy:
        """Build the simulated proxy for a Pod object."""
        meta = pod.get("metadata") or {}
        return cls(
            ProxyConfig.from_pod(pod, tuning=tuning),
            namespace=str(meta.get("namespace", "default")),
            name=str(meta.get("name", "")),
            deployment=deployment,
            faults=faults,
            clock=clock,
            rng=rng,
            state_file=state_file,
        )

    # Shorthands the tests read: each family as it stands at the clock's now.
    @property
    def requests_total(self) -> Counter:
        """zai_proxy_requests_total."""
        self._settle(self._clock())
        return self.metrics.requests_total

    @property
    def request_duration(self) -> Histogram:
        """zai_proxy_request_duration_seconds."""
        self._settle(self._clock())
        return self.metrics.request_duration

    @property
    def upstream_errors(self) -> Counter:
        """zai_proxy_upstream_errors_total."""
        self._settle(self._clock())
        return self.metrics.upstream_errors

    @property
    def retry_attempts(self) -> Counter:
        """zai_proxy_retry_attempts_total."""
        self._settle(self._clock())
        return self.metrics.retry_attempts

    @property
    def rate_limit_adjustments(self) -> Counter:
        """zai_proxy_rate_limit_adjustments_total."""
        self._settle(self._clock())
        return self.metrics.rate_limit_adjustments

    @property
    def limiter(self) -> AdaptiveRateLimiter:
        """The adaptive limiter, with every limiter event due by now applied."""
        self._settle(self._clock())
        return self._limiter

    @property
    def variant(self) -> str:
        """The `variant` label value (DEPLOYMENT_VARIANT)."""
        return self.config.variant

    @property
    def in_flight(self) -> int:
        """Requests still being processed at the clock's now."""
        self._settle(self._clock())
        return len(self._in_flight)

    def _settle(self, now: float) -> None:
        """Apply every effect due by `now`, in time order."""
        heap = self._in_flight
        while heap and heap[0] <= now:
            heapq.heappop(heap)
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, _, event, request = heapq.heappop(pending)
            self._apply(event, request)

    def _apply(self, event: Event, request: _Request) -> None:
        m, variant = self.metrics, self.variant
        kind = event.kind
        if kind == "final":
            labels = (request.method, request.path, event.label, variant)
            m.requests_total.inc(labels)
            m.request_duration.observe(labels, event.value)
        elif kind == "wait":
            m.rate_limit_wait.observe((request.client, variant), event.value)
        elif kind == "upstream_error":
            m.upstream_errors.inc((event.label, variant))
        elif kind in ("retry_reason", "retry"):
            m.retry_attempts.inc((event.label, variant))
        else:
            limiter = self._limiter
            feed = limiter.record_429 if kind == "limiter_429" else limiter.record_success
            direction = feed(event.at)
            if direction is not None:
                m.rate_limit_adjustments.inc((direction, variant))

    def handle(
        self, method: str = "POST", path: str = "/v1/messages", client: str = DEFAULT_CLIENT
    ) -> Outcome:
        """Serve one request arriving now from peer IP `client`; return what its client gets."""
        now = self._clock()
        self._settle(now)
        cfg = self.config
        self._seen_request = True
        request = _Request(method, path, client_bucket(client))
        # The request counts itself in flight before the check: number MAX_WORKERS + 1 is refused.
        if cfg.max_workers > 0 and len(self._in_flight) + 1 > cfg.max_workers:
            self.metrics.rate_limit_rejections.inc((request.client, self.variant))
            self.metrics.requests_total.inc((method, path, "503", self.variant))
            return Outcome(503, 0.0, body=CAPACITY_BODY)
        profile = self.faults.get(self.namespace, self.deployment)
        rng = self._rng
        trace = trace_request(
            now,
            max_retries=cfg.max_retries,
            attempt=lambda: profile.draw(rng, path),
            admit=lambda: self._limiter.reserve(now),
            jitter=rng.random,
            retry_after=profile.retry_after,
            scale=cfg.tuning.retry_backoff,
        )
        final = Event(trace.end, "final", str(trace.status), trace.latency)
        for event in (*trace.events, final):
            if event.at <= now:
                self._apply(event, request)
            else:
                heapq.heappush(self._pending, (event.at, next(self._seq), event, request))
        heapq.heappush(self._in_flight, trace.end)
        rule = trace.rule
        return Outcome(
            trace.status,
            trace.latency,
            headers=trace.headers(profile.retry_after),
            body=rule.body if rule is not None else "",
            attempts=trace.attempts,
        )

    def reset_rate_limit(self) -> dict[str, Any]:
        """POST /admin/reset-rate-limit: the limiter back to RATE_LIMIT_INITIAL (gauge stale)."""
        self._settle(self._clock())
        self._limiter.reset()
        return {"current_rate": self._limiter.current_rate, "status": "reset"}

    def health(self) -> dict[str, Any]:
        """The /health body, shaped like the real proxy's (quota polling disabled)."""
        self._settle(self._clock())
        limiter = self._limiter
        rate_limit: dict[str, Any] = {
            "current_rate": limiter.current_rate,
            "ceiling": limiter.estimated_ceiling,
            "hold": limiter.hold,
        }
        if limiter.ceiling_updated_at is not None:
            wall = datetime.fromtimestamp(limiter.ceiling_updated_at + self._wall_offset, UTC)
            rate_limit["ceiling_updated_at"] = wall.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.config.state_file:
            rate_limit["state_file"] = self.config.state_file
        rate_limit["restored_from_state"] = limiter.restored_from_state
        return {
            "quota": {"enabled": False, "fresh": False},
            "rate_limit": rate_limit,
            "status": "ok",
        }

    def render_metrics(self) -> str:
        """The /metrics body in the Prometheus text format."""
        self._settle(self._clock())
        m, variant = self.metrics, (self.variant,)
        # Like the real proxy, the worker gauges exist only once a request has arrived: a
        # fresh pod exposes build_info, max_workers and the rate gauge, nothing else.
        if self._seen_request:
            in_flight = len(self._in_flight)
            m.concurrent_requests.set(variant, in_flight)
            if self.config.max_workers > 0:
                m.worker_utilization.set(variant, in_flight / self.config.max_workers)
        m.rate_limit_rate.set(variant, self._limiter.gauge)
        return render(m.families())


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: no spaces, whole floats without '.0', a newline."""
    return _go(value) + "\n"


def _go(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"json: unsupported value: {value}")
        if value == 0 or 1e-6 <= abs(value) < 1e21:
            # strconv.AppendFloat(f, 'f', -1): the shortest digits, never an exponent.
            text = format(Decimal(repr(value)), "f")
            return text.rstrip("0").rstrip(".") if "." in text else text
        return repr(value).replace("e-0", "e-").replace("e+0", "e+")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # Go escapes <, > and & for HTML safety and leaves other non-ASCII alone.
        text = json.dumps(value, ensure_ascii=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_go(str(k))}:{_go(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_go(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__}")
