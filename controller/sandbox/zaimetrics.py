"""The simulated zai-proxy's metric families: names, types, labels and buckets of the real ones.

From `proxy/metrics.go`, as exposed by the real binary (research note, section 4). Every family
carries `variant` (DEPLOYMENT_VARIANT verbatim); none carries `pod` (the scrape adds it). Series
appear lazily, as client_golang's vectors create them: a fresh process exposes only
`build_info`, `max_workers` and the rate gauge; the worker gauges come with the first request
(a 503 too), `requests_total` and the duration with the first answer, the error, retry,
adjustment, wait and rejection families with their first event.

Not simulated (no decision reads them): request/response sizes, tokens, cost, the tokenizer's
timings, the quota poller's families (QUOTA_POLL_ENABLED is off by default).
"""

from __future__ import annotations

from controller.sandbox.exposition import Counter, Family, Gauge, Histogram

REQUEST_LABELS = ("method", "path", "status_code", "variant")
# zai_proxy_request_duration_seconds (proxy/metrics.go)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# zai_proxy_rate_limit_wait_seconds
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)


class ZaiMetrics:
    """One simulated process's registry."""

    def __init__(self) -> None:
        self.requests_total = Counter(
            "zai_proxy_requests_total",
            "Total number of requests by method, path, status code, and variant",
            REQUEST_LABELS,
        )
        self.request_duration = Histogram(
            "zai_proxy_request_duration_seconds",
            "Request duration in seconds",
            REQUEST_LABELS,
            DURATION_BUCKETS,
        )
        self.concurrent_requests = Gauge(
            "zai_proxy_concurrent_requests",
            "Number of requests currently being processed",
            ("variant",),
        )
        self.max_workers = Gauge(
            "zai_proxy_max_workers", "Maximum number of concurrent workers allowed", ("variant",)
        )
        self.worker_utilization = Gauge(
            "zai_proxy_worker_utilization_ratio",
            "Current worker utilization ratio (concurrent_requests/max_workers)",
            ("variant",),
        )
        self.upstream_errors = Counter(
            "zai_proxy_upstream_errors_total",
            "Total number of upstream errors by type",
            ("error_type", "variant"),
        )
        self.retry_attempts = Counter(
            "zai_proxy_retry_attempts_total",
            "Total number of retry attempts",
            ("reason", "variant"),
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
        self.rate_limit_wait = Histogram(
            "zai_proxy_rate_limit_wait_seconds",
            "Time spent waiting for rate limiter",
            ("client", "variant"),
            WAIT_BUCKETS,
        )
        self.rate_limit_rejections = Counter(
            "zai_proxy_rate_limit_rejections_total",
            "Total number of requests rejected at capacity",
            ("client", "variant"),
        )
        self.build_info = Gauge(
            "zai_proxy_build_info",
            "Build information including version, variant, commit, and build time",
            ("version", "variant", "commit", "build_time"),
        )

    def families(self) -> tuple[Family, ...]:
        """Every family, for rendering (empty ones are left out of the text)."""
        return (
            self.build_info,
            self.concurrent_requests,
            self.max_workers,
            self.rate_limit_adjustments,
            self.rate_limit_rate,
            self.rate_limit_rejections,
            self.rate_limit_wait,
            self.request_duration,
            self.requests_total,
            self.retry_attempts,
            self.upstream_errors,
            self.worker_utilization,
        )


def client_bucket(peer_ip: str) -> str:
    """The `client` label: FNV-32a of the TCP peer's IP, mod 64 (`rateLimitClientBucket`)."""
    h = 0x811C9DC5
    for byte in (peer_ip or "unknown").encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"source-{h % 64:02d}"
