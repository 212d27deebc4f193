"""A simulated zai-proxy pod: adaptive limiter, worker cap, retries, fault injection, metrics.

Modelled on the real proxy (jedarden/zai-proxy: `proxy/handler.go`, `proxy/metrics.go`,
`proxy/ratelimiter_state.go`, `proxy/config/config.go`). One request is one synchronous call
to `SimulatedZaiProxy.handle()` at the injected clock's "now"; nothing sleeps, so a traffic
generator can drive hundreds of pods cheaply. Per request, as in `ProxyHandler.ServeHTTP`:

1. more than MAX_WORKERS requests in flight -> 503 (no duration observed, as in the proxy);
2. one limiter token (the proxy waits in `rateLimiter.Wait`). The simulation lets a request
   queue for at most `tuning.max_queue_wait`; beyond that it is over the pod's limit and is
   answered 429 as if its retries had been exhausted (the real proxy would queue unboundedly
   and its callers would time out). These local 429s do not feed the limiter: only upstream
   429s do, so a cold pod under excess demand keeps climbing, as the real one does;
3. the upstream outcome, drawn from the (namespace, Deployment) fault profile: a persistent
   upstream failure ends in 502 and an upstream rate limit in 429, each after MAX_RETRIES
   retries with the proxy's 1 s, 2 s, 4 s... backoff added to the latency; otherwise 200.

Metrics are counted when the request arrives rather than when it completes; at 1 s scrapes
that shifts nothing but multi-second retried requests.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.sandbox.exposition import Counter, Gauge, Histogram, render
from controller.sandbox.faults import FaultProfiles
from controller.sandbox.ratelimiter import AdaptiveRateLimiter, Clock, LimiterSettings

DEFAULT_PORT = 8080
DEFAULT_VARIANT = "production"
DEFAULT_STATE_FILE = "/var/lib/zai-proxy/ceiling.json"
# The real proxy's request-duration buckets (proxy/metrics.go).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class ProxyTuning:
    """Sandbox-only knobs (no env var in the real proxy); defaults are the real timings.

    Pod env `SANDBOX_RATE_LIMIT_WINDOW`, `SANDBOX_RETRY_BACKOFF`, `SANDBOX_MAX_QUEUE_WAIT`
    (seconds) override them per pod, so a demo can speed up one Deployment only.
    """

    adjustment_window: float = 30.0
    retry_backoff: float = 1.0
    max_queue_wait: float = 0.5


def _env_float(env: Mapping[str, str], key: str, default: float, *, positive: bool) -> float:
    # The real proxy falls back to the default on unset, unparsable or out-of-range values.
    try:
        value = float(env[key])
    except (KeyError, ValueError):
        return default
    if math.isnan(value) or (value <= 0 if positive else value < 0):
        return default
    return value


def _env_int(env: Mapping[str, str], key: str, default: int, *, positive: bool) -> int:
    try:
        value = int(env[key])
    except (KeyError, ValueError):
        return default
    return default if (value <= 0 if positive else value < 0) else value


def _env_fraction(env: Mapping[str, str], key: str, default: float, *, closed_top: bool) -> float:
    value = _env_float(env, key, default, positive=True)
    return value if (value <= 1 if closed_top else value < 1) else default


@dataclass(frozen=True)
class ProxyConfig:
    """A pod's proxy settings, read from its container env like the real binary."""

    limiter: LimiterSettings = field(default_factory=LimiterSettings)
    max_workers: int = 10
    max_retries: int = 3
    variant: str = DEFAULT_VARIANT
    version: str = "unknown"
    commit: str = "unknown"
    build_time: str = "unknown"
    state_file: str = DEFAULT_STATE_FILE
    port: int = DEFAULT_PORT
    tuning: ProxyTuning = field(default_factory=ProxyTuning)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        image: str = "",
        port: int = DEFAULT_PORT,
        tuning: ProxyTuning | None = None,
    ) -> ProxyConfig:
        """Build from env vars with the real names (RATE_LIMIT_*, MAX_WORKERS, ...)."""
        base = tuning or ProxyTuning()
        tuning = ProxyTuning(
            adjustment_window=_env_float(
                env, "SANDBOX_RATE_LIMIT_WINDOW", base.adjustment_window, positive=False
            ),
            retry_backoff=_env_float(
                env, "SANDBOX_RETRY_BACKOFF", base.retry_backoff, positive=False
            ),
            max_queue_wait=_env_float(
                env, "SANDBOX_MAX_QUEUE_WAIT", base.max_queue_wait, positive=False
            ),
        )
        defaults = LimiterSettings()
        limiter = LimiterSettings(
            initial=_env_float(env, "RATE_LIMIT_INITIAL", defaults.initial, positive=True),
            minimum=_env_float(env, "RATE_LIMIT_MIN", defaults.minimum, positive=True),
            maximum=_env_float(env, "RATE_LIMIT_MAX", defaults.maximum, positive=True),
            ceiling_alpha=_env_fraction(
                env, "RATE_LIMIT_CEILING_ALPHA", defaults.ceiling_alpha, closed_top=True
            ),
            hold_margin=_env_fraction(
                env, "RATE_LIMIT_HOLD_MARGIN", defaults.hold_margin, closed_top=False
            ),
            probe_interval=_env_int(
                env, "RATE_LIMIT_PROBE_INTERVAL", defaults.probe_interval, positive=True
            ),
            adjustment_window=tuning.adjustment_window,
        )
        return cls(
            limiter=limiter,
            max_workers=_env_int(env, "MAX_WORKERS", 10, positive=True),
            max_retries=_env_int(env, "MAX_RETRIES", 3, positive=False),
            variant=env.get("DEPLOYMENT_VARIANT") or DEFAULT_VARIANT,
            version=env.get("ZAI_PROXY_VERSION") or image_tag(image) or "unknown",
            commit=env.get("ZAI_PROXY_COMMIT") or "unknown",
            build_time=env.get("ZAI_PROXY_BUILD_TIME") or "unknown",
            state_file=env.get("RATE_LIMIT_STATE_FILE", DEFAULT_STATE_FILE),
            port=port,
            tuning=tuning,
        )

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any], *, tuning: ProxyTuning | None = None) -> ProxyConfig:
        """Build from a Pod object (dict): its zai-proxy container's env, image and port."""
        container = proxy_container(pod)
        env = {
            str(item["name"]): str(item["value"])
            for item in container.get("env") or []
            if "name" in item and item.get("value") is not None
        }
        ports = [p for p in container.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
        port = int(ports[0]["containerPort"]) if ports else DEFAULT_PORT
        return cls.from_env(env, image=str(container.get("image", "")), port=port, tuning=tuning)


def proxy_container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The container that runs the proxy: the one named `zai-proxy`, else the first."""
    containers: list[Mapping[str, Any]] = list((pod.get("spec") or {}).get("containers") or [])
    if not containers:
        return {}
    for container in containers:
        if container.get("name") == "zai-proxy":
            return container
    return containers[0]


def image_tag(image: str) -> str:
    """Tag of an image reference (`repo/zai-proxy:v2.1` -> `v2.1`), or '' when untagged."""
    ref = image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    return tag if name and "/" not in tag else ""


@dataclass(frozen=True)
class Outcome:
    """Final result of one simulated request."""

    status: int
    latency: float


class SimulatedZaiProxy:
    """One zai-proxy pod's request handling, /health state and /metrics."""

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
    ) -> None:
        self.config = config
        self.namespace = namespace
        self.name = name
        self.deployment = deployment
        self.faults = faults or FaultProfiles()
        self.limiter = AdaptiveRateLimiter(config.limiter, clock)
        self._clock = clock
        self._rng = rng or random.Random()
        self._wall_offset = time.time() - clock()
        self._in_flight: list[float] = []  # completion times, a min-heap
        self._init_metrics()

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
        )

    def _init_metrics(self) -> None:
        self.requests_total = Counter(
            "zai_proxy_requests_total",
            "Total number of requests by method, path, status code, and variant",
            ("method", "path", "status_code", "variant"),
        )
        self.request_duration = Histogram(
            "zai_proxy_request_duration_seconds",
            "Request duration in seconds",
            ("method", "path", "status_code", "variant"),
            DURATION_BUCKETS,
        )
        self.concurrent_requests = Gauge(
            "zai_proxy_concurrent_requests",
            "Number of requests currently being processed",
            ("variant",),
        )
        self.upstream_errors = Counter(
            "zai_proxy_upstream_errors_total",
            "Total number of upstream errors by type",
            ("error_type", "variant"),
        )
        self.max_workers_gauge = Gauge(
            "zai_proxy_max_workers", "Maximum number of concurrent workers allowed", ("variant",)
        )
        self.worker_utilization = Gauge(
            "zai_proxy_worker_utilization_ratio",
            "Current worker utilization ratio (concurrent_requests/max_workers)",
            ("variant",),
        )
        self.rate_limit_rate = Gauge(
            "zai_proxy_rate_limit_requests_per_second",
            "Current rate limit in requests per second",
            ("variant",),
        )
        self.rate_limit_adjustments = Counter(
            "zai_proxy_rate_limit_adjustments_total",
            "Total number of rate limit adjustments",
            ("direction", "variant"),
        )
        self.retry_attempts = Counter(
            "zai_proxy_retry_attempts_total",
            "Total number of retry attempts",
            ("reason", "variant"),
        )
        self.build_info = Gauge(
            "zai_proxy_build_info",
            "Build information including version, variant, commit, and build time",
            ("version", "variant", "commit", "build_time"),
        )
        c = self.config
        self.build_info.set((c.version, c.variant, c.commit, c.build_time), 1)
        self.max_workers_gauge.set((c.variant,), c.max_workers)

    @property
    def variant(self) -> str:
        """The `variant` label value (DEPLOYMENT_VARIANT)."""
        return self.config.variant

    @property
    def in_flight(self) -> int:
        """Requests still being processed at the clock's now."""
        self._expire(self._clock())
        return len(self._in_flight)

    def _expire(self, now: float) -> None:
        heap = self._in_flight
        while heap and heap[0] <= now:
            heapq.heappop(heap)

    def _adjusted(self, direction: str | None) -> None:
        if direction is not None:
            self.rate_limit_adjustments.inc((direction, self.variant))

    def _finish(self, method: str, path: str, status: int, latency: float, now: float) -> Outcome:
        labels = (method, path, str(status), self.variant)
        self.requests_total.inc(labels)
        self.request_duration.observe(labels, latency)
        heapq.heappush(self._in_flight, now + latency)
        return Outcome(status, latency)

    def handle(self, method: str = "POST", path: str = "/v1/messages") -> Outcome:
        """Serve one request arriving now and return its final status and latency."""
        now = self._clock()
        self._expire(now)
        cfg = self.config
        if cfg.max_workers > 0 and len(self._in_flight) >= cfg.max_workers:
            self.requests_total.inc((method, path, "503", self.variant))
            return Outcome(503, 0.0)

        retries = cfg.max_retries
        backoff_total = cfg.tuning.retry_backoff * (2**retries - 1)
        wait = self.limiter.acquire(cfg.tuning.max_queue_wait)
        if wait is None:
            # Over this pod's limit: counted like a request whose retries all hit 429s, but it
            # leaves at once instead of holding a worker for the backoff (see module doc).
            if retries:
                self.retry_attempts.inc(("retry", self.variant), retries)
                self.retry_attempts.inc(("429", self.variant), retries)
            labels = (method, path, "429", self.variant)
            self.requests_total.inc(labels)
            self.request_duration.observe(labels, cfg.tuning.max_queue_wait)
            return Outcome(429, cfg.tuning.max_queue_wait)

        profile = self.faults.get(self.namespace, self.deployment)
        draw = self._rng.random()
        if draw < profile.error_502 + profile.upstream_429:
            attempts = retries + 1
            latency = wait + backoff_total
            latency += sum(profile.latency.sample(self._rng) for _ in range(attempts))
            if retries:
                self.retry_attempts.inc(("retry", self.variant), retries)
            if draw < profile.error_502:
                self.upstream_errors.inc(("upstream_connection", self.variant), attempts)
                if retries:
                    self.retry_attempts.inc(("network_error", self.variant), retries)
                return self._finish(method, path, 502, latency, now)
            self.upstream_errors.inc(("429", self.variant), attempts)
            if retries:
                self.retry_attempts.inc(("429", self.variant), retries)
            for _ in range(attempts):
                self._adjusted(self.limiter.record_429())
            return self._finish(method, path, 429, latency, now)

        latency = wait + profile.latency.sample(self._rng)
        self._adjusted(self.limiter.record_success())
        return self._finish(method, path, 200, latency, now)

    def health(self) -> dict[str, Any]:
        """The /health body, shaped like the real proxy's (quota polling disabled)."""
        limiter = self.limiter
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
        rate_limit["restored_from_state"] = False
        return {
            "status": "ok",
            "rate_limit": rate_limit,
            "quota": {"enabled": False, "fresh": False},
        }

    def render_metrics(self) -> str:
        """The /metrics body in the Prometheus text format."""
        variant = (self.variant,)
        # Like the real proxy, the worker gauges exist only once a request has been handled:
        # a fresh pod exposes build_info, max_workers and the rate gauge, nothing else.
        if self.requests_total.values:
            in_flight = self.in_flight
            self.concurrent_requests.set(variant, in_flight)
            if self.config.max_workers > 0:
                self.worker_utilization.set(variant, in_flight / self.config.max_workers)
        self.rate_limit_rate.set(variant, self.limiter.current_rate)
        return render(
            (
                self.build_info,
                self.concurrent_requests,
                self.max_workers_gauge,
                self.rate_limit_adjustments,
                self.rate_limit_rate,
                self.request_duration,
                self.requests_total,
                self.retry_attempts,
                self.upstream_errors,
                self.worker_utilization,
            )
        )
