"""PrometheusProvider against a real Prometheus holding a fixed, backfilled data set.

The data set is zai-proxy traffic written as OpenMetrics text with explicit timestamps, turned
into TSDB blocks by `promtool tsdb create-blocks-from openmetrics` and served by the real
`prometheus` binary; every query runs at a fixed evaluation time, so values are exact. Each
scenario lives in its own namespace, so the scenarios are also each other's distractors.

Failure handling (refused connections, bad queries, 5xx, a server that never answers, auth
headers, TLS) runs against tiny local servers that count and record what they receive.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from controller.core.analysis.evaluate import Sample, Verdict, check_capacity, evaluate
from controller.core.config.load import load_config
from controller.core.config.model import Metric, PrometheusSettings, Rollout
from controller.sandbox.prometheus import PrometheusServer
from controller.shell.analysis_runner import AnalysisRunner
from controller.shell.providers.prometheus import PrometheusProvider, single_value
from tests.integration.promdata import backfilled_prometheus

REPO = Path(__file__).resolve().parents[2]
ZAI_CONFIG = REPO / "config" / "zai-proxy.yaml"

# The evaluation time: 2026-01-01T00:00:00Z. Data runs from T-20m to T+10m every 15 s.
T = 1_767_225_600
AT = datetime.fromtimestamp(T, UTC)
STEP_S = 15
START, END = T - 20 * 60, T + 10 * 60

STABLE_PODS = ("zai-proxy-7d9f8b6c5-abcde", "zai-proxy-7d9f8b6c5-fghij")
CANARY_POD = "zai-proxy-v2-5f6b7c8d9-klmno"

# Cumulative observations per second per `le`, per pod.
STABLE_BUCKETS = {"0.1": 4, "0.25": 7, "0.5": 9, "1.0": 10, "2.5": 10, "+Inf": 10}  # p95 0.75
CANARY_BUCKETS = {"0.1": 3, "0.25": 6, "0.5": 8, "1.0": 10, "2.5": 10, "+Inf": 10}  # p95 0.875


@dataclass(frozen=True)
class Pod:
    """One pod's traffic: requests per 15 s by status code, its limit and latency buckets."""

    name: str
    per_step: dict[str, int]  # status_code -> requests per 15 s (integers: exact counters)
    limit: float
    buckets: dict[str, int] = field(default_factory=lambda: dict(STABLE_BUCKETS))
    upstream_429: int | None = None  # upstream 429 attempts per 15 s (None: no such series)


def healthy_stable() -> list[Pod]:
    # 10 rps per pod: 200 9.4, 429 0.4, 502 0.2 -> 429 ratio 0.04, 502 ratio 0.02.
    return [Pod(p, {"200": 141, "429": 6, "502": 3}, limit=20.0) for p in STABLE_PODS]


SCENARIOS: dict[str, list[Pod]] = {
    # Canary at 10 rps: 429 0.02, 502 0.02, p95 0.875 (stable 0.75). Everything passes.
    "ptc-healthy": [
        *healthy_stable(),
        Pod(CANARY_POD, {"200": 144, "429": 3, "502": 3}, 12.5, dict(CANARY_BUCKETS)),
    ],
    # v2 answers 20% 502 (stable 2%): fails once `for: 1m` has passed.
    "ptc-badgw": [
        *healthy_stable(),
        Pod(CANARY_POD, {"200": 117, "429": 3, "502": 30}, 12.5, dict(CANARY_BUCKETS)),
    ],
    # An upstream incident: 20% 502 on v1, 22% on v2 - stable breaches too, so hold.
    "ptc-fleet": [
        *[Pod(p, {"200": 117, "429": 3, "502": 30}, 20.0) for p in STABLE_PODS],
        Pod(CANARY_POD, {"200": 114, "429": 3, "502": 33}, 12.5, dict(CANARY_BUCKETS)),
    ],
    # v2 gets 0.2 rps: 24 requests in the 2m window, below minRequests 50.
    "ptc-low": [
        *healthy_stable(),
        Pod(CANARY_POD, {"200": 3, "429": 0, "502": 0}, 4.0, {le: 0 for le in CANARY_BUCKETS}),
    ],
    # v2's series exist but carry no traffic: 0/0 is NaN, i.e. no data.
    "ptc-idle": [
        *healthy_stable(),
        Pod(CANARY_POD, {"200": 0, "429": 0, "502": 0}, 2.0, {le: 0 for le in CANARY_BUCKETS}),
    ],
    # v2 never answered a 429, so that series was never created (as with the real exporter).
    "ptc-no429": [
        *healthy_stable(),
        Pod(CANARY_POD, {"200": 147, "502": 3}, 12.5, dict(CANARY_BUCKETS)),
    ],
    # The upstream refuses v2's attempts: 90 upstream 429s per 150 requests (0.6 per request,
    # stable 0.1), but the proxy's retries hide them - clients saw 2 % 429s, as on stable.
    "ptc-hidden429": [
        *[Pod(p, {"200": 141, "429": 6, "502": 3}, 20.0, upstream_429=15) for p in STABLE_PODS],
        Pod(CANARY_POD, {"200": 144, "429": 3, "502": 3}, 12.5, upstream_429=90),
    ],
    # The same pressure on v1 and v2 (one account, one upstream): stable breaches too.
    "ptc-fleet429": [
        *[Pod(p, {"200": 141, "429": 6, "502": 3}, 20.0, upstream_429=84) for p in STABLE_PODS],
        Pod(CANARY_POD, {"200": 144, "429": 3, "502": 3}, 12.5, upstream_429=90),
    ],
    # v2 has served nothing yet: a fresh zai-proxy exposes its rate gauge, no request series.
    "ptc-fresh": [*healthy_stable(), Pod(CANARY_POD, {}, 10.0, {})],
}


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def openmetrics(scenarios: dict[str, list[Pod]]) -> str:
    """The whole data set as OpenMetrics text (families contiguous, samples in time order)."""
    times = range(START, END + 1, STEP_S)
    counters, upstream, gauges, histograms = [], [], [], []
    for namespace, pods in scenarios.items():
        for pod in pods:
            base = {"namespace": namespace, "pod": pod.name}
            for status, per_step in pod.per_step.items():
                labels = _labels(
                    method="POST",
                    **base,
                    path="/v1/chat/completions",
                    status_code=status,
                    variant="production",
                )
                counters += [
                    f"zai_proxy_requests_total{labels} {1000 + per_step * i} {t}"
                    for i, t in enumerate(times)
                ]
            if pod.upstream_429 is not None:
                labels = _labels(**base, error_type="429", variant="production")
                upstream += [
                    f"zai_proxy_upstream_errors_total{labels} {500 + pod.upstream_429 * i} {t}"
                    for i, t in enumerate(times)
                ]
            gauges += [
                f"zai_proxy_rate_limit_requests_per_second{_labels(**base)} {pod.limit} {t}"
                for t in times
            ]
            timed = {**base, "status_code": "200"}  # the pack's p95 reads answered 2xx
            for i, t in enumerate(times if pod.buckets else ()):
                for le, per_second in pod.buckets.items():
                    count = 500 + per_second * STEP_S * i
                    histograms.append(
                        f"zai_proxy_request_duration_seconds_bucket{_labels(**timed, le=le)} "
                        f"{count} {t}"
                    )
                total = 500 + pod.buckets["+Inf"] * STEP_S * i
                histograms.append(
                    f"zai_proxy_request_duration_seconds_count{_labels(**timed)} {total} {t}"
                )
                histograms.append(
                    f"zai_proxy_request_duration_seconds_sum{_labels(**timed)} {total * 0.4} {t}"
                )
    return "\n".join(
        [
            "# TYPE zai_proxy_requests counter",
            *counters,
            "# TYPE zai_proxy_upstream_errors counter",
            *upstream,
            "# TYPE zai_proxy_rate_limit_requests_per_second gauge",
            *gauges,
            "# TYPE zai_proxy_request_duration_seconds histogram",
            *histograms,
            "# EOF",
            "",
        ]
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrometheusServer]:
    """Real Prometheus serving the backfilled scenarios (read-only, so shared by the module)."""
    async with backfilled_prometheus(
        tmp_path_factory.mktemp("prom"), openmetrics(SCENARIOS)
    ) as server:
        yield server


def zai_setup(url: str, namespace: str) -> tuple[Rollout, PrometheusSettings]:
    """The shipped zai-proxy config, pointed at the test server and a scenario's namespace."""
    config = load_config(ZAI_CONFIG).config
    rollout = config.rollout("zai-proxy").model_copy(update={"namespace": namespace})
    return rollout, config.prometheus.model_copy(update={"url": url})


@asynccontextmanager
async def provider_for(
    settings: PrometheusSettings, **kwargs: Any
) -> AsyncIterator[PrometheusProvider]:
    provider = PrometheusProvider(settings, **kwargs)
    try:
        yield provider
    finally:
        await provider.close()


real = pytest.mark.prometheus
module_loop = pytest.mark.asyncio(loop_scope="module")


# -- exact values from the zai-proxy config -----------------------------------------------


@real
@module_loop
async def test_zai_proxy_metrics_have_exact_values(prometheus: PrometheusServer) -> None:
    rollout, settings = zai_setup(prometheus.url, "ptc-healthy")
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, rollout.step_analysis(0))

    assert set(measured) == {
        "server-error-ratio",
        "rate-limited-ratio",
        "upstream-429-pressure",
        "p95-latency",
    }
    exact = pytest.approx
    m429 = measured["rate-limited-ratio"]
    assert m429.canary == Sample(exact(0.02, rel=1e-9), requests=exact(1200.0))
    assert m429.stable == Sample(exact(0.04, rel=1e-9), requests=exact(2400.0))
    m502 = measured["server-error-ratio"]
    assert m502.canary == Sample(exact(0.02, rel=1e-9), requests=exact(1200.0))
    assert m502.stable == Sample(exact(0.02, rel=1e-9), requests=exact(2400.0))
    pressure = measured["upstream-429-pressure"]  # no upstream 429 series yet: 0, not no data
    assert pressure.canary == Sample(0.0, requests=exact(1200.0))
    p95 = measured["p95-latency"]
    assert p95.canary == Sample(exact(0.875, rel=1e-9), requests=exact(1200.0))
    assert p95.stable == Sample(exact(0.75, rel=1e-9), requests=exact(2400.0))

    summary = evaluate(rollout.analysis.metrics, measured, rollout.analysis.min_requests, AT)
    assert summary.verdict is Verdict.PASS, summary.explain()


@real
@module_loop
async def test_capacity_and_demand(prometheus: PrometheusServer) -> None:
    rollout, settings = zai_setup(prometheus.url, "ptc-healthy")
    gate = rollout.analysis.capacity_gate
    assert gate is not None
    async with provider_for(settings, at=lambda: AT) as provider:
        capacity, demand = await provider.capacity(rollout, gate, timedelta(minutes=2))

    # Capacity: v2's one pod limits itself to 12.5 rps (a gauge: no request count).
    assert capacity == Sample(12.5)
    # Demand: every pod behind the Service, 3 x 10 rps, 3600 requests in the window.
    assert demand == Sample(pytest.approx(30.0, rel=1e-9), requests=pytest.approx(3600.0))
    # Going to 25%: 30 x 0.25 x 1.2 = 9 rps needed -> pass; to 50%: 18 needed -> hold.
    assert check_capacity(gate, capacity, demand, 25).verdict is Verdict.PASS
    held = check_capacity(gate, capacity, demand, 50)
    assert held.verdict is Verdict.INCONCLUSIVE
    assert held.needed == pytest.approx(18.0)


@real
@module_loop
async def test_canary_502_surge_fails_after_for(prometheus: PrometheusServer) -> None:
    """20% 502 on v2 only: inconclusive while `for: 1m` runs, then fail (runner carries it)."""
    rollout, settings = zai_setup(prometheus.url, "ptc-badgw")
    now = AT
    reports = []
    async with provider_for(settings, at=lambda: now) as provider:
        runner = AnalysisRunner(rollout, provider, reports.append, clock=lambda: now)
        for _ in range(3):
            await runner.evaluate_once()
            now += rollout.analysis.interval

    verdicts = [{m.name: m.verdict for m in r.summary.metrics} for r in reports]
    assert [v["server-error-ratio"] for v in verdicts] == [
        Verdict.INCONCLUSIVE,
        Verdict.INCONCLUSIVE,
        Verdict.FAIL,
    ]
    assert [r.verdict for r in reports] == [
        Verdict.INCONCLUSIVE,
        Verdict.INCONCLUSIVE,
        Verdict.FAIL,
    ]
    failing = reports[-1].summary.failing()
    assert [m.name for m in failing] == ["server-error-ratio"]
    assert failing[0].value == pytest.approx(0.2, rel=1e-9)
    assert failing[0].stable == pytest.approx(0.02, rel=1e-9)
    assert failing[0].breach_since == AT
    # The other metrics pass throughout.
    assert all(v["rate-limited-ratio"] is Verdict.PASS for v in verdicts)
    assert all(v["p95-latency"] is Verdict.PASS for v in verdicts)


@real
@module_loop
async def test_fleet_wide_surge_holds_instead_of_failing(prometheus: PrometheusServer) -> None:
    rollout, settings = zai_setup(prometheus.url, "ptc-fleet")
    metrics = rollout.analysis.metrics
    previous = None
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, rollout.analysis)
    m502 = measured["server-error-ratio"]
    assert m502.canary.value == pytest.approx(0.22, rel=1e-9)
    assert m502.stable is not None and m502.stable.value == pytest.approx(0.20, rel=1e-9)
    # Well past `for:`, the same data still only holds.
    for minutes in (0, 1, 2, 5):
        previous = evaluate(metrics, measured, 50, AT + timedelta(minutes=minutes), previous)
        result = {m.name: m for m in previous.metrics}["server-error-ratio"]
        assert result.verdict is Verdict.INCONCLUSIVE
        assert "stable breaches too" in result.reason
    assert previous is not None and previous.verdict is Verdict.INCONCLUSIVE


@real
@module_loop
async def test_too_few_requests_is_inconclusive(prometheus: PrometheusServer) -> None:
    rollout, settings = zai_setup(prometheus.url, "ptc-low")
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, rollout.analysis)
    canary = measured["server-error-ratio"].canary
    assert canary == Sample(0.0, requests=pytest.approx(24.0))
    summary = evaluate(rollout.analysis.metrics, measured, 50, AT)
    bad_gateway = {m.name: m for m in summary.metrics}["server-error-ratio"]
    assert bad_gateway.verdict is Verdict.INCONCLUSIVE
    assert "24 requests < minRequests 50" in bad_gateway.reason
    assert summary.verdict is Verdict.INCONCLUSIVE


@real
@module_loop
async def test_no_traffic_is_no_data_not_nan(prometheus: PrometheusServer) -> None:
    """0/0 over an idle window is NaN in PromQL; NaN > max is false, so it must not pass."""
    rollout, settings = zai_setup(prometheus.url, "ptc-idle")
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, rollout.analysis)
    for name in measured:
        assert measured[name].canary == Sample(None, requests=0.0), name
    summary = evaluate(rollout.analysis.metrics, measured, 50, AT)
    assert summary.verdict is Verdict.INCONCLUSIVE
    assert all(m.reason == "no data for canary" for m in summary.metrics)


@real
@module_loop
async def test_a_canary_without_series_yet_is_inconclusive_on_every_metric(
    prometheus: PrometheusServer,
) -> None:
    """Absent is not 0: a canary that has served nothing has no data, never a pass."""
    rollout, settings = zai_setup(prometheus.url, "ptc-fresh")
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, rollout.analysis)
    assert len(measured) == 4
    assert all(m.canary.value is None for m in measured.values())
    summary = evaluate(rollout.analysis.metrics, measured, 50, AT)
    assert summary.verdict is Verdict.INCONCLUSIVE
    assert {m.verdict for m in summary.metrics} == {Verdict.INCONCLUSIVE}


@real
@module_loop
async def test_upstream_429s_the_retries_hide_fail_on_pressure_alone(
    prometheus: PrometheusServer,
) -> None:
    """The surge requests_total{status_code="429"} misses: 2 % for users, 0.6 per request."""
    rollout, settings = zai_setup(prometheus.url, "ptc-hidden429")
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, rollout.analysis)
    pressure = measured["upstream-429-pressure"]
    assert pressure.canary == Sample(pytest.approx(0.6, rel=1e-9), requests=pytest.approx(1200.0))
    assert pressure.stable is not None and pressure.stable.value == pytest.approx(0.1, rel=1e-9)
    assert measured["rate-limited-ratio"].canary.value == pytest.approx(0.02, rel=1e-9)
    metrics = rollout.analysis.metrics
    summary = evaluate(metrics, measured, 50, AT)
    later = evaluate(metrics, measured, 50, AT + timedelta(minutes=1), summary)
    verdicts = {m.name: m.verdict for m in later.metrics}
    assert verdicts == {
        "server-error-ratio": Verdict.PASS,
        "rate-limited-ratio": Verdict.PASS,  # users barely saw it
        "upstream-429-pressure": Verdict.FAIL,  # for: 1m of canary-only pressure
        "p95-latency": Verdict.PASS,
    }


@real
@module_loop
async def test_fleet_wide_upstream_429_pressure_holds(prometheus: PrometheusServer) -> None:
    rollout, settings = zai_setup(prometheus.url, "ptc-fleet429")
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, rollout.analysis)
    previous = None
    for minutes in (0, 1, 2, 5):
        previous = evaluate(
            rollout.analysis.metrics, measured, 50, AT + timedelta(minutes=minutes), previous
        )
        result = {m.name: m for m in previous.metrics}["upstream-429-pressure"]
        assert result.verdict is Verdict.INCONCLUSIVE
        assert "stable breaches too" in result.reason, result.reason


@real
@module_loop
async def test_counter_ratio_without_numerator_series_is_zero(
    prometheus: PrometheusServer,
) -> None:
    rollout, settings = zai_setup(prometheus.url, "ptc-no429")
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, rollout.analysis)
    assert measured["rate-limited-ratio"].canary == Sample(0.0, requests=pytest.approx(1200.0))


@real
@module_loop
async def test_raw_queries_sample_query_and_series_count(prometheus: PrometheusServer) -> None:
    rollout, settings = zai_setup(prometheus.url, "ptc-healthy")
    limit_sum = Metric.model_validate(
        {
            "name": "limit-sum",
            "query": "sum(zai_proxy_rate_limit_requests_per_second{ {{ selector }} })",
            "sampleQuery": (
                "sum(increase(zai_proxy_requests_total{ {{ selector }} }[{{ window }}]))"
            ),
            "min": 1,
        }
    )
    per_pod = Metric.model_validate(
        {
            "name": "limit-per-pod",
            "query": "zai_proxy_rate_limit_requests_per_second{ {{ selector }} }",
            "min": 1,
            "compare": {},
        }
    )
    analysis = rollout.analysis.model_copy(update={"metrics": [limit_sum, per_pod]})
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, analysis)
        scalar = await provider.query("scalar(sum(zai_proxy_rate_limit_requests_per_second))")

    assert measured["limit-sum"].canary == Sample(12.5, requests=pytest.approx(1200.0))
    assert measured["limit-sum"].stable is None  # no compare: stable is not queried
    assert measured["limit-per-pod"].canary == Sample(12.5)
    stable = measured["limit-per-pod"].stable
    assert stable is not None and stable.value is None and stable.error is not None
    assert "expected one series, got 2" in stable.error
    assert STABLE_PODS[0] in stable.error
    assert 'zai_proxy_rate_limit_requests_per_second{ namespace="ptc-healthy"' in stable.error
    # Every scenario's pods: 2 stable at 20 + one canary each.
    stable_sum = 20.0 * sum(len(pods) - 1 for pods in SCENARIOS.values())
    canary_sum = sum(pods[-1].limit for pods in SCENARIOS.values())
    assert scalar.value == pytest.approx(stable_sum + canary_sum)


@real
@module_loop
async def test_bad_query_reports_bad_data(prometheus: PrometheusServer) -> None:
    rollout, settings = zai_setup(prometheus.url, "ptc-healthy")
    broken = Metric.model_validate(
        {"name": "broken", "query": "sum(rate(zai_proxy_requests_total[{{ window }}])", "max": 1}
    )
    analysis = rollout.analysis.model_copy(update={"metrics": [broken]})
    async with provider_for(settings, at=lambda: AT) as provider:
        measured = await provider.measure(rollout, analysis)
    error = measured["broken"].canary.error
    assert error is not None
    assert error.startswith("HTTP 400 bad_data: ")
    assert "unclosed left parenthesis" in error
    assert "sum(rate(zai_proxy_requests_total[120s])" in error  # names the query
    assert "attempts" not in error  # not retried
    summary = evaluate([broken], measured, 50, AT)
    assert summary.verdict is Verdict.ERROR


@real
@module_loop
async def test_range_vector_result_is_an_error(prometheus: PrometheusServer) -> None:
    async with provider_for(PrometheusSettings(url=prometheus.url), at=lambda: AT) as provider:
        sample = await provider.query("zai_proxy_rate_limit_requests_per_second[1m]")
    assert sample.value is None
    assert sample.error is not None and "range vector" in sample.error


def test_single_value_shapes() -> None:
    assert single_value([]) is None
    assert single_value([T, "NaN"]) is None
    assert single_value([T, "+Inf"]) == float("inf")
    assert single_value([{"metric": {}, "value": [T, "0.5"]}]) == 0.5
    with pytest.raises(Exception, match=r"expected one series, got 4: .*, \.\.\."):
        single_value([{"metric": {"pod": str(i)}, "value": [T, "1"]} for i in range(4)])
    with pytest.raises(Exception, match="not a number"):
        single_value([T, "abc"])


# -- failures: refused, rejected, 5xx, hanging, auth, TLS ----------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


VECTOR_42 = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [T, "42"]}]},
}


@dataclass
class FakePrometheus:
    """A scripted /api/v1/query endpoint that records every request it gets."""

    responses: list[tuple[int, Any]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    hold: Callable[[], Awaitable[None]] | None = None
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"query": dict(request.query), "headers": dict(request.headers)})
        if self.hold is not None:
            await self.hold()
        # The last scripted answer repeats.
        status, body = self.responses[min(len(self.requests), len(self.responses)) - 1]
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)


@asynccontextmanager
async def fake_prometheus(
    *responses: tuple[int, Any],
    hold: Callable[[], Awaitable[None]] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[FakePrometheus]:
    fake = FakePrometheus(list(responses), hold=hold)
    app = web.Application()
    app.router.add_route("*", "/api/v1/query", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    fake.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def settings_for(url: str, timeout: float = 5.0, **kwargs: Any) -> PrometheusSettings:
    return PrometheusSettings(url=url, timeout=timedelta(seconds=timeout), **kwargs)


async def test_connection_refused_is_an_error_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with provider_for(settings_for(url, timeout=5)) as provider:
        started = time.monotonic()
        sample = await provider.query("up")
        elapsed = time.monotonic() - started
    assert sample.value is None
    assert sample.error is not None
    assert sample.error.startswith(f"cannot connect to {url}: connection refused after 3 attempts")
    assert sample.error.endswith("(query: up)")
    # Three attempts with 0.2 s and 0.4 s (+ <=0.1 s jitter each) between them.
    assert 0.55 < elapsed < 2.0


async def test_bad_data_is_not_retried() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}
    async with (
        fake_prometheus((400, body)) as fake,
        provider_for(settings_for(fake.url)) as provider,
    ):
        sample = await provider.query("sum(")
    assert len(fake.requests) == 1
    assert sample == Sample(None, error="HTTP 400 bad_data: parse error at char 4 (query: sum()")


async def test_server_error_then_success_is_retried() -> None:
    async with (
        fake_prometheus((500, "upstream hiccup"), (200, VECTOR_42)) as fake,
        provider_for(settings_for(fake.url)) as provider,
    ):
        sample = await provider.query("up")
    assert sample == Sample(42.0)
    assert len(fake.requests) == 2
    assert fake.requests[0]["query"] == {"query": "up"}  # no time= unless `at` is given


async def test_persistent_server_error_gives_up_after_three_attempts() -> None:
    body = {"status": "error", "errorType": "timeout", "error": "query timed out"}
    async with (
        fake_prometheus((503, body)) as fake,
        provider_for(settings_for(fake.url)) as provider,
    ):
        sample = await provider.query("up")
    assert len(fake.requests) == 3
    assert sample.error == "HTTP 503 timeout: query timed out after 3 attempts (query: up)"


async def test_non_prometheus_answer_is_an_error() -> None:
    async with (
        fake_prometheus((200, "<html>login</html>")) as fake,
        provider_for(settings_for(fake.url)) as provider,
    ):
        sample = await provider.query("up")
    assert sample.value is None
    assert sample.error is not None and "invalid JSON" in sample.error
    assert len(fake.requests) == 1


def _ptc_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ptc-prometheus")]


async def test_hanging_server_times_out_and_the_thread_ends() -> None:
    """A server that accepts and never answers: error after ~timeout, socket closed, no thread."""
    disconnected = asyncio.Event()
    connected_at: list[float] = []
    closed_at: list[float] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected_at.append(time.monotonic())
        while await reader.read(4096):  # swallow the request, answer nothing, until EOF
            pass
        closed_at.append(time.monotonic())
        disconnected.set()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        provider = PrometheusProvider(settings_for(f"http://127.0.0.1:{port}", timeout=1.0))
        started = time.monotonic()
        sample = await provider.query("up")
        elapsed = time.monotonic() - started
        assert sample.value is None
        assert sample.error is not None and sample.error.startswith("timeout: no answer from")
        assert 0.9 < elapsed < 1.6
        assert len(connected_at) == 1  # the budget was spent: no second attempt
        # The client hung up at its own timeout (not only our await ending).
        await asyncio.wait_for(disconnected.wait(), 2.0)
        assert closed_at[0] - started < 1.6
        # close() waits for worker threads; it returns at once because none is busy.
        close_started = time.monotonic()
        await provider.close()
        assert time.monotonic() - close_started < 0.5
        assert _ptc_threads() == []
    finally:
        server.close()
        await server.wait_closed()


async def test_queries_of_one_evaluation_run_concurrently_but_bounded() -> None:
    rollout = load_config(ZAI_CONFIG).config.rollout("zai-proxy")
    limit = 3
    in_flight = 0
    peak = 0
    reached = asyncio.Event()

    async def hold() -> None:
        # Each request waits until `limit` are in flight (or briefly, for the tail), so
        # concurrency is observed deterministically rather than by timing luck.
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= limit:
            reached.set()
        try:
            await asyncio.wait_for(reached.wait(), 2.0)
        except TimeoutError:
            pass
        finally:
            in_flight -= 1

    per_pod = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"pod": CANARY_POD}, "value": [T, "42"]}],
        },
    }
    async with (
        fake_prometheus((200, per_pod), hold=hold) as fake,
        provider_for(settings_for(fake.url), max_concurrency=limit) as provider,
    ):
        measured = await provider.measure(rollout, rollout.analysis)
    # Per side: the three ratios' numerators and their one denominator (requests_total, also
    # the request count), the histogram's buckets and count - each query once per call.
    assert len(fake.requests) == 12
    assert peak == limit
    assert all(m.canary.error is None and m.canary.requests == 42.0 for m in measured.values())


async def test_time_parameter_is_sent_when_fixed() -> None:
    async with (
        fake_prometheus((200, VECTOR_42)) as fake,
        provider_for(settings_for(fake.url), at=lambda: AT) as provider,
    ):
        await provider.query("up")
    assert fake.requests[0]["query"] == {"query": "up", "time": f"{T}.000"}


async def test_bearer_token_file_is_reread_and_headers_sent(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    async with fake_prometheus((200, VECTOR_42)) as fake:
        settings = settings_for(
            fake.url, bearer_token_file=str(token), headers={"X-Scope-OrgID": "team-a"}
        )
        async with provider_for(settings) as provider:
            await provider.query("up")
            token.write_text("rotated\n")  # kubelet rotates projected tokens in place
            await provider.query("up")
            token.unlink()
            missing = await provider.query("up")
    sent = [r["headers"] for r in fake.requests]
    assert [h["Authorization"] for h in sent] == ["Bearer first", "Bearer rotated"]
    assert all(h["X-Scope-OrgID"] == "team-a" for h in sent)
    assert len(fake.requests) == 2  # no request without a token
    assert missing.error is not None
    assert missing.error.startswith(f"cannot read bearer token file {token}: No such file")


async def test_ca_file_is_used_for_tls(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await asyncio.to_thread(
        subprocess.run,
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with (
        fake_prometheus((200, VECTOR_42), ssl_context=context) as fake,
        provider_for(settings_for(fake.url, ca_file=str(cert))) as provider,
    ):
        trusted = await provider.query("up")
        async with provider_for(settings_for(fake.url)) as provider:
            untrusted = await provider.query("up")
    assert trusted == Sample(42.0)
    assert untrusted.error is not None and untrusted.error.startswith("TLS error talking to")
    assert "attempts" not in untrusted.error  # a certificate problem is not retried
    assert len(fake.requests) == 1


async def test_closed_provider_answers_with_an_error() -> None:
    provider = PrometheusProvider(settings_for("http://127.0.0.1:9"))
    await provider.close()
    await provider.close()  # idempotent
    sample = await provider.query("up")
    assert sample.error == "provider is closed (query: up)"


async def test_close_while_queries_wait_ends_them_with_an_error() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        provider = PrometheusProvider(settings_for(url, timeout=0.5), max_concurrency=1)
        first = asyncio.create_task(provider.query("up"))
        second = asyncio.create_task(provider.query("vector(1)"))  # waits for the only slot
        await asyncio.sleep(0)
        await provider.close()  # returns once the running request has timed out
        assert (await first).error is not None
        assert (await second).error == "provider is closed (query: vector(1))"
        assert _ptc_threads() == []
    finally:
        server.close()
        await server.wait_closed()
