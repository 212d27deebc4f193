"""Simulated zai-proxy: adaptive limiter, worker cap, retries, fault injection, exposition."""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess

import pytest

from controller.sandbox.exposition import Counter, Gauge, Histogram, render
from controller.sandbox.faults import FaultProfile, FaultProfiles, Latency
from controller.sandbox.ratelimiter import AdaptiveRateLimiter, LimiterSettings, burst_for
from controller.sandbox.zaiproxy import (
    DURATION_BUCKETS,
    ProxyConfig,
    ProxyTuning,
    SimulatedZaiProxy,
    image_tag,
)
from tests.sandbox.conftest_pods import FakeClock, make_pod, parse_exposition

FAST = Latency(median=0.01, p95=0.01)


def proxy(
    clock: FakeClock,
    env: dict[str, str] | None = None,
    *,
    faults: FaultProfiles | None = None,
    seed: int = 7,
    name: str = "zai-proxy-abc-1",
    deployment: str = "zai-proxy",
) -> SimulatedZaiProxy:
    """A simulated pod of Deployment `deployment` in namespace `default`."""
    return SimulatedZaiProxy.from_pod(
        make_pod(name, env=env),
        deployment,
        faults=faults or FaultProfiles(FaultProfile(latency=FAST)),
        clock=clock,
        rng=random.Random(seed),
    )


def requests(p: SimulatedZaiProxy, code: str) -> float:
    return p.requests_total.get(("POST", "/v1/messages", code, p.variant))


# -- limiter -------------------------------------------------------------------------------


def test_limiter_starts_at_rate_limit_initial_from_the_pod_env() -> None:
    clock = FakeClock()
    p = proxy(clock, {"RATE_LIMIT_INITIAL": "4", "DEPLOYMENT_VARIANT": "v2"})
    assert p.limiter.current_rate == 4.0
    assert p.health()["rate_limit"]["current_rate"] == 4.0
    _, samples = parse_exposition(p.render_metrics())
    assert ("zai_proxy_rate_limit_requests_per_second", {"variant": "v2"}, 4.0) in samples


def test_limiter_climbs_one_window_at_a_time_toward_the_hold_point() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(LimiterSettings(initial=5.0), clock)
    clock.advance(29.0)
    assert limiter.record_success() is None  # window not over yet
    assert limiter.current_rate == 5.0
    rates: list[float] = []
    for _ in range(4):
        clock.advance(1.0 if not rates else 30.0)
        assert limiter.record_success() == "increase"
        rates.append(limiter.current_rate)
    # Each clean window closes half the gap to ceiling x (1 - 2 %) = 49 req/s.
    assert rates == pytest.approx([27.0, 38.0, 43.5, 46.25])
    assert limiter.hold == pytest.approx(49.0)


def test_limiter_grows_only_with_traffic_like_the_real_lazy_adjustment() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(LimiterSettings(initial=5.0), clock)
    clock.advance(300.0)
    assert limiter.current_rate == 5.0  # no outcome recorded, so nothing is judged


def test_limiter_backs_off_on_upstream_429_windows() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(LimiterSettings(initial=49.0), clock)
    rates = [limiter.current_rate]
    for _ in range(3):
        clock.advance(30.0)
        directions = [limiter.record_429() for _ in range(10)]
        assert directions[0] == "decrease"
        assert directions[1:] == [None] * 9
        rates.append(limiter.current_rate)
    assert rates[1] == pytest.approx((0.3 * 49 + 0.7 * 50) * 0.98)
    assert rates[0] > rates[1] > rates[2] > rates[3]
    assert limiter.hold == pytest.approx(limiter.estimated_ceiling * 0.98)
    assert limiter.ceiling_updated_at == clock.now


def test_limiter_ignores_a_429_share_between_1_and_5_percent() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(LimiterSettings(initial=20.0), clock)
    for _ in range(97):
        limiter.record_success()
    for _ in range(3):
        limiter.record_429()
    clock.advance(30.0)
    assert limiter.record_success() is None
    assert limiter.current_rate == 20.0


def test_limiter_moves_to_the_ewma_hold_even_when_cold_as_the_real_proxy_does() -> None:
    # A 429 window re-estimates the ceiling from the RATE_LIMIT_MAX assumption, so a cold
    # pod jumps to 0.98 x (0.3 x 5 + 0.7 x 50): the real proxy's rule, quirks included.
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(LimiterSettings(initial=5.0), clock)
    clock.advance(30.0)
    assert limiter.record_429() == "decrease"
    assert limiter.current_rate == pytest.approx(36.5 * 0.98)


def test_limiter_probes_above_the_ceiling_every_probe_interval_clean_windows() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(LimiterSettings(initial=49.0, probe_interval=3), clock)
    directions = []
    for _ in range(3):
        clock.advance(30.0)
        directions.append(limiter.record_success())
    assert directions == [None, None, "probe"]
    assert limiter.current_rate == 50.0  # ceiling x 1.02, capped at RATE_LIMIT_MAX


def test_token_bucket_burst_is_twice_the_rate_like_the_real_proxy() -> None:
    assert [burst_for(r) for r in (0.0, 0.4, 2.0, 10.0, 10.7)] == [0, 1, 4, 20, 21]


def test_requests_over_the_limit_queue_fifo_and_their_duration_includes_the_wait() -> None:
    clock = FakeClock()
    p = proxy(clock, {"RATE_LIMIT_INITIAL": "2", "MAX_WORKERS": "100"})
    # Burst 4 passes at once; the rest wait their turn at 2 tokens/s, unboundedly, as
    # `Limiter.Wait` callers do - none is refused, none answered 429.
    outcomes = [p.handle() for _ in range(10)]
    assert {o.status for o in outcomes} == {200}
    waits = [round(o.latency - 0.01, 6) for o in outcomes]
    assert waits == [0, 0, 0, 0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    clock.advance(3.1)
    assert requests(p, "200") == 10
    assert p.upstream_errors.values == {}
    # The wait is in request_duration_seconds: a cold pod's p50 is limiter wait, not upstream.
    key = ("POST", "/v1/messages", "200", p.variant)
    assert p.request_duration.series[key].sum == pytest.approx(sum(o.latency for o in outcomes))


def test_a_pod_asked_for_more_than_its_limit_fills_its_workers_and_answers_503() -> None:
    clock = FakeClock()
    p = proxy(clock, {"RATE_LIMIT_INITIAL": "2", "MAX_WORKERS": "10"})
    statuses = []
    for _ in range(100):  # 10 req/s against a limit of 2: the queue holds workers
        statuses.append(p.handle().status)
        clock.advance(0.1)
    assert statuses[:10] == [200] * 10
    assert 503 in statuses
    assert requests(p, "503") == statuses.count(503) > 50
    key = ("POST", "/v1/messages", "503", p.variant)
    assert p.request_duration.count(key) == 0
    assert p.metrics.rate_limit_rejections.get(("source-30", p.variant)) == statuses.count(503)


def test_queued_successes_feed_the_limiter_so_a_cold_pod_climbs_under_excess_demand() -> None:
    clock = FakeClock()
    p = proxy(clock, {"RATE_LIMIT_INITIAL": "2", "MAX_WORKERS": "1000"})
    for _ in range(310):
        for _ in range(5):  # 2.5x the limit
            p.handle()
        clock.advance(0.1)
    assert p.limiter.current_rate == pytest.approx(2 + (49 - 2) / 2)
    assert p.rate_limit_adjustments.get(("increase", p.variant)) == 1


def test_without_retries_an_upstream_429_is_the_answer_and_counts_no_retry() -> None:
    clock = FakeClock()
    faults = FaultProfiles(FaultProfile(upstream_429=1.0, latency=FAST))
    p = proxy(clock, {"MAX_RETRIES": "0"}, faults=faults)
    outcome = p.handle()
    assert (outcome.status, outcome.attempts) == (429, 1)
    clock.advance(1.0)
    assert p.retry_attempts.values == {}
    assert p.upstream_errors.get(("429", p.variant)) == 1


def test_more_than_max_workers_in_flight_is_503() -> None:
    clock = FakeClock()
    faults = FaultProfiles(FaultProfile(latency=Latency(1.0, 1.0)))
    p = proxy(clock, {"MAX_WORKERS": "3", "RATE_LIMIT_INITIAL": "50"}, faults=faults)
    outcomes = [p.handle() for _ in range(5)]
    assert [o.status for o in outcomes] == [200, 200, 200, 503, 503]
    assert outcomes[3].latency == 0.0 and outcomes[3].body == "Service at capacity"
    assert p.in_flight == 3
    key = ("POST", "/v1/messages", "503", p.variant)
    assert requests(p, "503") == 2  # counted at once ...
    assert p.request_duration.count(key) == 0  # ... and never timed, like the proxy
    clock.advance(1.0)
    assert p.in_flight == 0
    assert p.handle().status == 200


def test_fault_probabilities_are_per_upstream_attempt() -> None:
    clock = FakeClock()
    faults = FaultProfiles()
    faults.set("default", "zai-proxy-v2", FaultProfile(error_502=0.2, upstream_429=0.3))
    env = {"RATE_LIMIT_INITIAL": "1000", "RATE_LIMIT_MAX": "1000", "MAX_WORKERS": "1000000"}
    p = proxy(clock, env, faults=faults, deployment="zai-proxy-v2", seed=42)
    n = 20_000
    latencies = []
    for _ in range(n):
        clock.advance(0.005)
        outcome = p.handle()
        if outcome.status == 200 and outcome.attempts == 1:
            latencies.append(outcome.latency)
    clock.advance(60.0)
    # A request ends at its first 502 or 200; four 429 attempts in a row end it as a 429.
    ends = 0.2 + 0.5
    assert requests(p, "429") / n == pytest.approx(0.3**4, abs=0.004)
    assert requests(p, "502") / n == pytest.approx(0.2 / ends * (1 - 0.3**4), abs=0.015)
    assert requests(p, "503") == 0
    # Exact bookkeeping of the real proxy: 502s pass through 1:1; every 429 attempt is one
    # upstream error, and every one but a request's last is retried.
    assert p.upstream_errors.get(("502", p.variant)) == requests(p, "502")
    upstream_429 = p.upstream_errors.get(("429", p.variant))
    assert p.retry_attempts.get(("429", p.variant)) == upstream_429 - requests(p, "429")
    assert p.retry_attempts.get(("retry", p.variant)) == upstream_429 - requests(p, "429")
    attempts = requests(p, "200") + requests(p, "502") + upstream_429
    assert upstream_429 / attempts == pytest.approx(0.3, abs=0.01)
    assert statistics.median(latencies) == pytest.approx(0.05, rel=0.1)
    assert statistics.quantiles(latencies, n=20)[-1] == pytest.approx(0.15, rel=0.15)

    faults.update("default", "zai-proxy-v2", error_502=0.0, upstream_429=0.0)
    before = requests(p, "200")
    for _ in range(1000):
        clock.advance(0.005)
        p.handle()
    clock.advance(1.0)
    assert requests(p, "200") - before == 1000  # the change applies to the very next request


def test_fault_profiles_are_per_namespace_and_deployment() -> None:
    faults = FaultProfiles()
    faults.set("default", "zai-proxy-v2", FaultProfile(error_502=1.0))
    clock = FakeClock()
    v1 = proxy(clock, faults=faults, deployment="zai-proxy")
    v2 = proxy(clock, faults=faults, deployment="zai-proxy-v2")
    assert {v1.handle().status for _ in range(5)} == {200}
    assert {v2.handle().status for _ in range(5)} == {502}
    faults.clear("default", "zai-proxy-v2")
    assert v2.handle().status == 200


def test_fault_profile_validation() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultProfile(error_502=1.5)
    with pytest.raises(ValueError, match="probability"):
        FaultProfile(dropped=float("nan"))
    with pytest.raises(ValueError, match="must not exceed 1 in total"):
        FaultProfile(error_502=0.6, upstream_429=0.3, truncated=0.2)
    with pytest.raises(ValueError, match="retry_after"):
        FaultProfile(retry_after=0)
    with pytest.raises(ValueError, match="median"):
        Latency(median=0.2, p95=0.1)


# -- config from the pod -------------------------------------------------------------------


def test_config_reads_the_real_env_names_and_falls_back_on_bad_values() -> None:
    env = {
        "RATE_LIMIT_INITIAL": "3",
        "RATE_LIMIT_MIN": "2",
        "RATE_LIMIT_MAX": "nonsense",
        "RATE_LIMIT_CEILING_ALPHA": "0.5",
        "RATE_LIMIT_HOLD_MARGIN": "1.5",
        "RATE_LIMIT_PROBE_INTERVAL": "-1",
        "MAX_WORKERS": "0",
        "MAX_RETRIES": "0",
        "SANDBOX_RATE_LIMIT_WINDOW": "2",
    }
    cfg = ProxyConfig.from_pod(make_pod("p", env=env, port=9090))
    assert cfg.limiter == LimiterSettings(
        initial=3, minimum=2, maximum=50, ceiling_alpha=0.5, hold_margin=0.02, adjustment_window=2
    )
    assert (cfg.max_workers, cfg.max_retries, cfg.port) == (10, 0, 9090)
    assert cfg.variant == "production"
    assert cfg.version == "v1.4.0"


def test_version_comes_from_env_then_image_tag() -> None:
    pod = make_pod("p", env={"ZAI_PROXY_VERSION": "2.0.0"}, image="registry:5000/zai:v9")
    assert ProxyConfig.from_pod(pod).version == "2.0.0"
    assert image_tag("registry:5000/zai-proxy") == ""
    assert image_tag("registry:5000/zai-proxy:v2@sha256:abc") == "v2"
    assert ProxyConfig.from_pod(make_pod("p", port=None)).port == 8080


def test_tuning_defaults_can_be_overridden_per_runtime() -> None:
    tuning = ProxyTuning(adjustment_window=1.0, retry_backoff=0.01)
    cfg = ProxyConfig.from_pod(make_pod("p"), tuning=tuning)
    assert cfg.tuning == tuning
    assert cfg.limiter.adjustment_window == 1.0


# -- exposition ----------------------------------------------------------------------------


def busy_proxy() -> SimulatedZaiProxy:
    """A pod whose metrics have every decision-relevant family and status code populated."""
    clock = FakeClock()
    faults = FaultProfiles(FaultProfile(latency=FAST))
    env = {"RATE_LIMIT_INITIAL": "5", "MAX_WORKERS": "20", "DEPLOYMENT_VARIANT": "v2"}
    p = proxy(clock, env, faults=faults, deployment="zai-proxy-v2")
    for _ in range(30):  # 6x the limit at once: 20 queue (holding workers), 10 get 503
        p.handle()
    clock.advance(10.0)
    faults.set("default", "zai-proxy-v2", FaultProfile(error_502=0.3, upstream_429=0.6))
    for _ in range(40):
        clock.advance(0.5)
        p.handle()
    faults.clear("default", "zai-proxy-v2")
    clock.advance(60.0)
    p.handle()  # the window closes with mostly 429s -> a decrease
    clock.advance(1.0)
    return p


EXPECTED_LABELS = {
    "zai_proxy_requests_total": {"method", "path", "status_code", "variant"},
    "zai_proxy_request_duration_seconds_bucket": {"method", "path", "status_code", "variant", "le"},
    "zai_proxy_request_duration_seconds_sum": {"method", "path", "status_code", "variant"},
    "zai_proxy_request_duration_seconds_count": {"method", "path", "status_code", "variant"},
    "zai_proxy_rate_limit_requests_per_second": {"variant"},
    "zai_proxy_rate_limit_adjustments_total": {"direction", "variant"},
    "zai_proxy_rate_limit_wait_seconds_bucket": {"client", "variant", "le"},
    "zai_proxy_rate_limit_wait_seconds_sum": {"client", "variant"},
    "zai_proxy_rate_limit_wait_seconds_count": {"client", "variant"},
    "zai_proxy_rate_limit_rejections_total": {"client", "variant"},
    "zai_proxy_upstream_errors_total": {"error_type", "variant"},
    "zai_proxy_build_info": {"version", "variant", "commit", "build_time"},
    "zai_proxy_concurrent_requests": {"variant"},
    "zai_proxy_max_workers": {"variant"},
    "zai_proxy_worker_utilization_ratio": {"variant"},
    "zai_proxy_retry_attempts_total": {"reason", "variant"},
}


def test_exposition_has_the_real_metric_names_and_labels() -> None:
    p = busy_proxy()
    types, samples = parse_exposition(p.render_metrics())
    assert types["zai_proxy_requests_total"] == "counter"
    assert types["zai_proxy_request_duration_seconds"] == "histogram"
    assert types["zai_proxy_rate_limit_requests_per_second"] == "gauge"
    seen = {name for name, _, _ in samples}
    assert seen == set(EXPECTED_LABELS)
    for name, labels, _ in samples:
        assert set(labels) == EXPECTED_LABELS[name], name
        if "variant" in labels:
            assert labels["variant"] == "v2"
    codes = {lab["status_code"] for n, lab, _ in samples if n == "zai_proxy_requests_total"}
    assert codes == {"200", "429", "502", "503"}
    build = [lab for n, lab, _ in samples if n == "zai_proxy_build_info"]
    assert build == [
        {"version": "v1.4.0", "variant": "v2", "commit": "unknown", "build_time": "unknown"}
    ]


def test_exposition_sorts_families_and_labels_like_client_golang() -> None:
    text = busy_proxy().render_metrics()
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert families == sorted(families)
    assert (
        'zai_proxy_build_info{build_time="unknown",commit="unknown",variant="v2",'
        'version="v1.4.0"} 1' in text
    )
    assert (
        'zai_proxy_rate_limit_wait_seconds_bucket{client="source-30",variant="v2",le="0.001"}'
        in (text)
    )


def test_series_appear_lazily_like_the_real_proxy() -> None:
    clock = FakeClock()
    faults = FaultProfiles(FaultProfile(latency=Latency(1.0, 1.0)))
    p = proxy(clock, {"DEPLOYMENT_VARIANT": "v2"}, faults=faults)

    def families() -> set[str]:
        _, samples = parse_exposition(p.render_metrics())
        return {name.removesuffix("_bucket") for name, _, _ in samples if "_sum" not in name}

    # A fresh process (research note section 4): nothing about requests until the first one.
    fresh = {
        "zai_proxy_build_info",
        "zai_proxy_max_workers",
        "zai_proxy_rate_limit_requests_per_second",
    }
    assert families() == fresh
    p.handle()  # in flight for 1 s: the worker gauges and the limiter wait exist already
    in_flight = fresh | {
        "zai_proxy_concurrent_requests",
        "zai_proxy_worker_utilization_ratio",
        "zai_proxy_rate_limit_wait_seconds",
        "zai_proxy_rate_limit_wait_seconds_count",
    }
    assert families() == in_flight
    clock.advance(1.0)  # answered: requests_total and the duration come with the answer
    answered = in_flight | {
        "zai_proxy_requests_total",
        "zai_proxy_request_duration_seconds",
        "zai_proxy_request_duration_seconds_count",
    }
    assert families() == answered  # no error, retry or adjustment family before its event


def test_histogram_uses_the_real_buckets_and_is_cumulative() -> None:
    p = busy_proxy()
    _, samples = parse_exposition(p.render_metrics())
    series = [
        (lab["le"], v)
        for n, lab, v in samples
        if n == "zai_proxy_request_duration_seconds_bucket" and lab["status_code"] == "200"
    ]
    assert [le for le, _ in series] == [*(str(b) for b in DURATION_BUCKETS), "+Inf"]
    counts = [v for _, v in series]
    assert counts == sorted(counts)
    total = next(
        v
        for n, lab, v in samples
        if n == "zai_proxy_request_duration_seconds_count" and lab["status_code"] == "200"
    )
    assert counts[-1] == total == requests(p, "200")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
def test_exposition_passes_promtool_check_metrics() -> None:
    text = busy_proxy().render_metrics()
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
def test_label_values_are_escaped() -> None:
    counter = Counter("x_total", "Help with \\ backslash\nand newline", ("a",))
    counter.inc(('quote " backslash \\ newline \n',), 2)
    gauge = Gauge("y", "a gauge", ())
    gauge.set((), 0.25)
    histogram = Histogram("z_seconds", "a histogram", (), (1.0, 0.5))
    histogram.observe((), 0.5)
    text = render([counter, gauge, histogram])
    assert 'x_total{a="quote \\" backslash \\\\ newline \\n"} 2' in text
    assert 'z_seconds_bucket{le="0.5"} 1' in text  # le is inclusive
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_health_has_the_real_shape() -> None:
    p = busy_proxy()
    body = p.health()
    assert list(body) == ["quota", "rate_limit", "status"]  # Go sorts a map's keys
    assert body["status"] == "ok"
    assert list(body["rate_limit"]) == [
        "current_rate",
        "ceiling",
        "hold",
        "ceiling_updated_at",
        "state_file",
        "restored_from_state",
    ]
    assert body["rate_limit"]["current_rate"] == p.limiter.current_rate
    assert body["quota"] == {"enabled": False, "fresh": False}
