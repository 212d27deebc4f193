"""Conformance of the simulated zai-proxy with the real binary, row by row.

Each test names the row of the research note on the real binary
(shared/research/zai-proxy-real-binary.md) it checks: section 4 (metric families), section 5
(what the client sees against what the metrics say) and section 6 (/health). Section 7 (the
limiter's traces) is in test_ratelimiter_traces.py.
"""

from __future__ import annotations

import random
from collections import Counter as Tally
from collections.abc import AsyncIterator

import aiohttp
import pytest

from controller.sandbox.faults import FaultProfile, FaultProfiles, Latency
from controller.sandbox.podserver import SimulatedPodRuntime
from controller.sandbox.zaimetrics import DURATION_BUCKETS, WAIT_BUCKETS
from controller.sandbox.zaiproxy import ProxyTuning, SimulatedZaiProxy
from tests.sandbox.conftest_pods import FakeClock, make_pod, parse_exposition

INSTANT = Latency(0.001, 0.001)  # the note's mock answered at once
REQUESTS = "zai_proxy_requests_total"
ROOMY = {"RATE_LIMIT_INITIAL": "1000", "RATE_LIMIT_MAX": "1000", "DEPLOYMENT_VARIANT": "v2"}


def pod(
    clock: FakeClock, profile: FaultProfile, env: dict[str, str] | None = None, *, seed: int = 1
) -> SimulatedZaiProxy:
    return SimulatedZaiProxy.from_pod(
        make_pod("zai-proxy-v2-abc12-xyz12", env={**ROOMY, **(env or {})}),
        "zai-proxy-v2",
        faults=FaultProfiles(profile),
        clock=clock,
        rng=random.Random(seed),
    )


def metric(p: SimulatedZaiProxy, name: str, **labels: str) -> float:
    """Sum of one family's samples matching `labels` (0 when absent)."""
    _, samples = parse_exposition(p.render_metrics())
    return sum(
        v
        for n, lab, v in samples
        if n == name and all(lab.get(k) == want for k, want in labels.items())
    )


def families(p: SimulatedZaiProxy) -> dict[str, str]:
    types, _ = parse_exposition(p.render_metrics())
    return types


# -- section 4: families -------------------------------------------------------------------

# (family, type, labels without le, buckets) exactly as the note's table has them.
FAMILIES = [
    ("zai_proxy_requests_total", "counter", {"method", "path", "status_code", "variant"}, None),
    (
        "zai_proxy_request_duration_seconds",
        "histogram",
        {"method", "path", "status_code", "variant"},
        (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    ),
    ("zai_proxy_concurrent_requests", "gauge", {"variant"}, None),
    ("zai_proxy_max_workers", "gauge", {"variant"}, None),
    ("zai_proxy_worker_utilization_ratio", "gauge", {"variant"}, None),
    ("zai_proxy_upstream_errors_total", "counter", {"error_type", "variant"}, None),
    ("zai_proxy_retry_attempts_total", "counter", {"reason", "variant"}, None),
    ("zai_proxy_rate_limit_requests_per_second", "gauge", {"variant"}, None),
    ("zai_proxy_rate_limit_adjustments_total", "counter", {"direction", "variant"}, None),
    (
        "zai_proxy_rate_limit_wait_seconds",
        "histogram",
        {"client", "variant"},
        (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
    ),
    ("zai_proxy_rate_limit_rejections_total", "counter", {"client", "variant"}, None),
    ("zai_proxy_build_info", "gauge", {"build_time", "commit", "variant", "version"}, None),
]


def every_family_populated() -> SimulatedZaiProxy:
    clock = FakeClock()
    profile = FaultProfile(error_502=0.2, upstream_429=0.4, latency=INSTANT)
    p = pod(clock, profile, {"MAX_WORKERS": "5", "RATE_LIMIT_INITIAL": "5"})
    for _ in range(400):
        for _ in range(2):
            p.handle()
        clock.advance(0.25)
    clock.advance(60.0)
    return p


@pytest.mark.parametrize(("name", "kind", "labels", "buckets"), FAMILIES, ids=lambda v: str(v))
def test_section4_family_has_the_real_type_labels_and_buckets(
    name: str, kind: str, labels: set[str], buckets: tuple[float, ...] | None
) -> None:
    p = every_family_populated()
    types, samples = parse_exposition(p.render_metrics())
    assert types[name] == kind
    mine = [(n, lab) for n, lab, _ in samples if n == name or n.startswith(name + "_")]
    assert mine, f"{name} has no series"
    for n, lab in mine:
        assert set(lab) - {"le"} == labels, n
        assert "pod" not in lab  # the scrape adds it (ServiceMonitor/PodMonitor)
        assert lab["variant"] == "v2"  # DEPLOYMENT_VARIANT verbatim
    if buckets is not None:
        les = sorted({float(lab["le"]) for n, lab in mine if n == name + "_bucket"})
        assert les == [*sorted(buckets), float("inf")]
    assert {DURATION_BUCKETS, WAIT_BUCKETS} >= ({buckets} if buckets else set())


def test_section4_a_fresh_process_exposes_three_families_and_the_rest_come_lazily() -> None:
    clock = FakeClock()
    p = pod(clock, FaultProfile(latency=INSTANT), {"RATE_LIMIT_INITIAL": "10"})
    assert set(families(p)) == {
        "zai_proxy_build_info",
        "zai_proxy_max_workers",
        "zai_proxy_rate_limit_requests_per_second",
    }
    assert metric(p, "zai_proxy_rate_limit_requests_per_second") == 10  # RATE_LIMIT_INITIAL
    p.handle()
    clock.advance(1.0)
    after_one = set(families(p))
    assert {"zai_proxy_requests_total", "zai_proxy_request_duration_seconds"} <= after_one
    assert {"zai_proxy_concurrent_requests", "zai_proxy_worker_utilization_ratio"} <= after_one
    # Absent is not 0: each of these appears only with its first event.
    for lazy in (
        "zai_proxy_upstream_errors_total",
        "zai_proxy_retry_attempts_total",
        "zai_proxy_rate_limit_adjustments_total",
        "zai_proxy_rate_limit_rejections_total",
    ):
        assert lazy not in after_one


def test_section4_path_is_the_raw_request_path_and_status_code_what_the_client_got() -> None:
    clock = FakeClock()
    p = pod(clock, FaultProfile(latency=INSTANT))
    for path in ("/v1/messages", "/v1/chat/completions", "/v1/messages/count_tokens", "/x?y"):
        p.handle("POST", path)
    clock.advance(1.0)
    _, samples = parse_exposition(p.render_metrics())
    got = {(lab["path"], lab["status_code"]) for n, lab, _ in samples if n == REQUESTS}
    assert got == {
        ("/v1/messages", "200"),
        ("/v1/chat/completions", "200"),
        ("/v1/messages/count_tokens", "200"),
        ("/x?y", "404"),  # every path a client sends becomes a series
    }


def test_section4_client_label_is_fnv32a_of_the_peer_ip_mod_64() -> None:
    clock = FakeClock()
    p = pod(clock, FaultProfile(latency=INSTANT))
    p.handle(client="127.0.0.1")
    clock.advance(1.0)
    assert metric(p, "zai_proxy_rate_limit_wait_seconds_count", client="source-30") == 1


# -- section 5: one request per upstream answer -----------------------------------------------


def probe(
    profile: FaultProfile, env: dict[str, str] | None = None, *, seed: int = 1
) -> tuple[SimulatedZaiProxy, FakeClock, object]:
    clock = FakeClock()
    p = pod(clock, profile, env, seed=seed)
    outcome = p.handle()
    clock.advance(outcome.latency + 1.0)
    return p, clock, outcome


def test_section5_200_valid_json_one_attempt_counted_and_timed() -> None:
    p, _, o = probe(FaultProfile(latency=INSTANT))
    assert (o.status, o.attempts) == (200, 1)
    assert metric(p, "zai_proxy_requests_total", status_code="200") == 1
    assert metric(p, "zai_proxy_request_duration_seconds_count", status_code="200") == 1
    assert "zai_proxy_upstream_errors_total" not in families(p)


@pytest.mark.parametrize("status", [502, 500])
def test_section5_upstream_5xx_passes_through_once_not_retried(status: int) -> None:
    field = {502: "error_502", 500: "error_500"}[status]
    p, _, o = probe(FaultProfile(latency=INSTANT, **{field: 1.0}))
    assert (o.status, o.attempts, o.latency) == (status, 1, pytest.approx(0.01))
    assert metric(p, "zai_proxy_requests_total", status_code=str(status)) == 1
    assert metric(p, "zai_proxy_upstream_errors_total", error_type=str(status)) == 1
    assert metric(p, "zai_proxy_request_duration_seconds_count", status_code=str(status)) == 1
    assert "zai_proxy_retry_attempts_total" not in families(p)


def test_section5_quota_429_is_returned_at_once_with_its_class_and_never_feeds_the_limiter() -> (
    None
):
    p, _, o = probe(FaultProfile(quota_429=1.0, retry_after=3600, latency=INSTANT))
    assert (o.status, o.attempts) == (429, 1)
    assert o.headers == {
        "X-Zai-Error-Class": "quota",
        "X-Zai-Error-Code": "1308",
        "Retry-After": "3600",
    }
    assert metric(p, "zai_proxy_requests_total", status_code="429") == 1
    assert metric(p, "zai_proxy_upstream_errors_total", error_type="429") == 1
    assert "zai_proxy_retry_attempts_total" not in families(p)
    assert p.limiter._recent_429 == 0  # limiter NOT fed


def test_section5_concurrency_429_four_attempts_seven_seconds_limiter_not_fed() -> None:
    p, _, o = probe(FaultProfile(concurrency_429=1.0, latency=INSTANT))
    assert (o.status, o.attempts) == (429, 4)
    assert o.latency == pytest.approx(7.0, abs=0.05)
    assert o.headers["X-Zai-Error-Class"] == "concurrency"
    assert metric(p, "zai_proxy_upstream_errors_total", error_type="429") == 4
    assert metric(p, "zai_proxy_retry_attempts_total", reason="429") == 3
    assert metric(p, "zai_proxy_retry_attempts_total", reason="retry") == 3
    assert p.limiter._recent_429 == 0


def test_section5_frequency_429_jittered_backoff_at_least_retry_after_feeds_the_limiter() -> None:
    latencies = []
    for seed in range(40):
        p, _, o = probe(FaultProfile(frequency_429=1.0, retry_after=1, latency=INSTANT), seed=seed)
        assert (o.status, o.attempts) == (429, 4)
        assert o.headers["X-Zai-Error-Class"] == "frequency"
        assert p.limiter._recent_429 == 4  # limiter fed, every attempt
        latencies.append(o.latency)
    # max(1, [0.5,1)) + max(1, [1,2)) + max(1, [2,4)) = [4, 7); the note measured 5.4 s.
    assert all(4.0 <= t < 7.05 for t in latencies)
    assert min(latencies) < 5.0 < max(latencies)


def test_section5_unknown_429_waits_retry_after_plus_the_curve() -> None:
    p, _, o = probe(FaultProfile(upstream_429=1.0, retry_after=2, latency=INSTANT))
    assert (o.status, o.attempts) == (429, 4)
    assert o.headers["X-Zai-Error-Class"] == "unknown"
    assert o.latency == pytest.approx(13.0, abs=0.05)  # (2+1) + (2+2) + (2+4)
    assert p.limiter._recent_429 == 4


def test_section5_dropped_connection_ends_in_502_upstream_error_after_four_attempts() -> None:
    p, _, o = probe(FaultProfile(dropped=1.0, latency=INSTANT))
    assert (o.status, o.attempts, o.body) == (502, 4, "Upstream error")
    assert o.latency == pytest.approx(7.0, abs=0.01)
    assert metric(p, "zai_proxy_upstream_errors_total", error_type="upstream_connection") == 4
    assert metric(p, "zai_proxy_retry_attempts_total", reason="network_error") == 3
    assert metric(p, "zai_proxy_requests_total", status_code="502") == 1


def test_section5_truncated_json_ends_in_502_after_four_attempts() -> None:
    p, _, o = probe(FaultProfile(truncated=1.0, latency=INSTANT))
    assert (o.status, o.attempts) == (502, 4)
    assert o.body == "Upstream returned empty or malformed response after retries"
    assert o.latency == pytest.approx(7.0, abs=0.01)
    assert metric(p, "zai_proxy_upstream_errors_total", error_type="truncated_response") == 4
    assert metric(p, "zai_proxy_retry_attempts_total", reason="truncated_response") == 3


def test_section5_proxy_full_answers_503_at_once_counted_never_timed() -> None:
    clock = FakeClock()
    p = pod(clock, FaultProfile(latency=Latency(5.0, 5.0)), {"MAX_WORKERS": "2"})
    outcomes = [p.handle() for _ in range(3)]
    assert [o.status for o in outcomes] == [200, 200, 503]
    assert (outcomes[2].attempts, outcomes[2].latency) == (0, 0.0)
    assert outcomes[2].body == "Service at capacity"
    assert metric(p, "zai_proxy_requests_total", status_code="503") == 1
    assert metric(p, "zai_proxy_rate_limit_rejections_total", client="source-30") == 1
    assert metric(p, "zai_proxy_request_duration_seconds_count", status_code="503") == 0
    assert metric(p, "zai_proxy_concurrent_requests") == 2
    assert metric(p, "zai_proxy_worker_utilization_ratio") == 1.0


def test_section5_retry_waits_scale_with_the_sandbox_tuning() -> None:
    clock = FakeClock()
    p = SimulatedZaiProxy.from_pod(
        make_pod("p", env=ROOMY),
        "d",
        faults=FaultProfiles(FaultProfile(upstream_429=1.0, retry_after=2, latency=INSTANT)),
        tuning=ProxyTuning(retry_backoff=0.01),
        clock=clock,
        rng=random.Random(1),
    )
    # 13 s of waits x 0.01, plus the four (unscaled) 10 ms upstream answers
    assert p.handle().latency == pytest.approx(0.13 + 0.04)


def test_section5_fault_run_hides_upstream_429s_behind_retries() -> None:
    """The note's fault run: 30 % upstream 502 + 20 % 429 (no code), 800 requests."""
    clock = FakeClock()
    p = pod(clock, FaultProfile(error_502=0.3, upstream_429=0.2, latency=INSTANT), seed=7)
    seen: Tally[int] = Tally()
    for _ in range(800):
        seen[p.handle().status] += 1
        clock.advance(0.05)
    clock.advance(60.0)
    # The note: clients 507 x 200, 292 x 502, 1 x 429; 185 upstream 429s, 184 retries.
    assert seen[200] == pytest.approx(507, abs=45)
    assert seen[502] == pytest.approx(292, abs=45)
    assert seen[429] <= 4
    upstream_429 = metric(p, "zai_proxy_upstream_errors_total", error_type="429")
    assert upstream_429 == pytest.approx(185, abs=40)
    assert metric(p, "zai_proxy_upstream_errors_total", error_type="502") == seen[502]
    assert metric(p, "zai_proxy_retry_attempts_total", reason="429") == upstream_429 - seen[429]
    assert metric(p, "zai_proxy_retry_attempts_total", reason="retry") == upstream_429 - seen[429]
    # Upstream 429s are mostly hidden: a few per cent of the clients see what the upstream did
    # to a quarter of the attempts.
    assert seen[429] / 800 < 0.01 < upstream_429 / (800 + upstream_429) * 0.5


# -- section 6: /health ----------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def test_section6_fresh_health_is_byte_for_byte_the_real_body(
    http: aiohttp.ClientSession,
) -> None:
    async with SimulatedPodRuntime(seed=1, clock=FakeClock()) as runtime:
        ip = await runtime.start_pod(make_pod("zai-proxy-abc12-xyz12"), "zai-proxy")
        async with http.get(f"http://{ip}:8080/health") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            body = await response.text()
    assert body == (
        '{"quota":{"enabled":false,"fresh":false},"rate_limit":{"current_rate":10,'
        '"ceiling":50,"hold":49,"state_file":"/var/lib/zai-proxy/ceiling.json",'
        '"restored_from_state":false},"status":"ok"}\n'
    )


async def test_section6_health_after_a_learned_ceiling_and_while_everything_fails(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    faults = FaultProfiles(FaultProfile(latency=INSTANT))
    async with SimulatedPodRuntime(faults, seed=1, clock=clock) as runtime:
        ip = await runtime.start_pod(make_pod("p", env={"RATE_LIMIT_INITIAL": "10"}), "d")
        proxy = runtime.pod_by_ip(ip)
        assert proxy is not None
        for _ in range(31):  # a clean window: 10 -> 29.5
            proxy.handle()
            clock.advance(1.0)
        faults.default = FaultProfile(upstream_429=1.0, error_502=0.0, latency=INSTANT)
        for _ in range(31):  # a 429 window: 29.5 -> 42.973, ceiling 43.85
            proxy.handle()
            clock.advance(1.0)
        faults.default = FaultProfile(error_502=1.0, latency=INSTANT)  # upstream all down
        async with http.get(f"http://{ip}:8080/health") as response:
            assert response.status == 200  # /health does not look at the upstream
            body = await response.json()
    rate_limit = body["rate_limit"]
    assert rate_limit["current_rate"] == pytest.approx(42.973)
    assert rate_limit["ceiling"] == pytest.approx(43.85)
    assert rate_limit["hold"] == pytest.approx(42.973)
    assert (
        rate_limit["ceiling_updated_at"].endswith("Z") and "T" in rate_limit["ceiling_updated_at"]
    )
    assert list(rate_limit) == [
        "current_rate",
        "ceiling",
        "hold",
        "ceiling_updated_at",
        "state_file",
        "restored_from_state",
    ]
    assert body["status"] == "ok"


async def test_health_and_metrics_are_not_counted_and_other_paths_are_proxied(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    faults = FaultProfiles(FaultProfile(quota_429=1.0, retry_after=60, latency=INSTANT))
    async with SimulatedPodRuntime(faults, seed=1, clock=clock) as runtime:
        ip = await runtime.start_pod(make_pod("p", env={"DEPLOYMENT_VARIANT": "v2"}), "d")
        for path in ("/health", "/metrics", "/health", "/metrics"):
            async with http.get(f"http://{ip}:8080{path}") as response:
                assert response.status == 200
        async with http.post(f"http://{ip}:8080/v1/messages", json={}) as response:
            assert response.status == 429
            assert response.headers["X-Zai-Error-Class"] == "quota"
            assert response.headers["Retry-After"] == "60"
        async with http.get(f"http://{ip}:8080/admin/reset-rate-limit") as response:
            assert response.status == 405
        clock.advance(1.0)
        proxy = runtime.pod_by_ip(ip)
        assert proxy is not None
        _, samples = parse_exposition(proxy.render_metrics())
    counted = {
        (lab["path"], lab["status_code"]): v
        for n, lab, v in samples
        if n == "zai_proxy_requests_total"
    }
    assert counted == {("/v1/messages", "429"): 1}
