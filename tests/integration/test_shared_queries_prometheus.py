"""Shared queries on a real Prometheus: the same numbers as each rollout's own queries.

Three rollouts of the shipped zai-proxy config in one namespace (plus a distractor namespace),
backfilled as in test_prometheus_provider.py. Evaluated together at one tick they send one
per-pod query per template and namespace; evaluated one by one (``evaluate_soon``) each sends
its own. Both must give identical samples and verdicts, and match the compiled per-side
queries Prometheus aggregates itself.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from controller.core.analysis.evaluate import Measurement, Sample, evaluate
from controller.core.analysis.grouping import grouped_query
from controller.core.config.load import load_config
from controller.core.config.model import CanaryRef, DeploymentRef, PrometheusSettings, Rollout
from controller.sandbox.prometheus import PrometheusServer
from controller.shell.providers.prometheus import PrometheusProvider
from tests.integration.promdata import backfilled_prometheus
from tests.integration.test_prometheus_provider import (
    AT,
    CANARY_BUCKETS,
    ZAI_CONFIG,
    Pod,
    openmetrics,
)

NAMESPACE = "ptc-shared"
APPS = ("alpha", "beta", "gamma")


def pods(app: str, errors: int, throttled: int, upstream: int, limit: float) -> list[Pod]:
    stable = [
        Pod(f"{app}-7d9f8b6c5-{s}", {"200": 141, "429": 6, "502": 3}, 20.0, upstream_429=15)
        for s in ("abcde", "fghij")
    ]
    canary = Pod(
        f"{app}-v2-5f6b7c8d9-klmno",
        {"200": 150 - errors - throttled, "429": throttled, "502": errors},
        limit,
        dict(CANARY_BUCKETS),
        upstream_429=upstream,
    )
    return [*stable, canary]


SCENARIOS = {
    # alpha passes, beta answers 20 % 502 (fails after for:), gamma is throttled upstream.
    NAMESPACE: pods("alpha", 3, 3, 10, 12.5)
    + pods("beta", 30, 3, 10, 8.0)
    + pods("gamma", 3, 3, 90, 12.5),
    # Same deployment names elsewhere: a namespace matcher that leaked would count these.
    "ptc-other": pods("alpha", 75, 0, 0, 1.0),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrometheusServer]:
    async with backfilled_prometheus(
        tmp_path_factory.mktemp("prom"), openmetrics(SCENARIOS)
    ) as server:
        yield server


def fleet(url: str) -> tuple[list[Rollout], PrometheusSettings]:
    config = load_config(ZAI_CONFIG).config
    base = config.rollout("zai-proxy")
    rollouts = [
        base.model_copy(
            update={
                "name": app,
                "service": app,
                "namespace": NAMESPACE,
                "stable": DeploymentRef(deployment=app),
                "canary": CanaryRef(deployment=f"{app}-v2", version="v2"),
            }
        )
        for app in APPS
    ]
    return rollouts, config.prometheus.model_copy(update={"url": url})


Reading = tuple[dict[str, Measurement], tuple[Sample, Sample]]


async def read(provider: PrometheusProvider, rollout: Rollout, tick: bool) -> Reading:
    analysis = rollout.analysis
    gate = analysis.capacity_gate
    assert gate is not None
    at = AT if tick else None
    return (
        await provider.measure(rollout, analysis, tick=at),
        await provider.capacity(rollout, gate, analysis.window, tick=at),
    )


def close_to(a: Sample | None, b: Sample | None) -> bool:
    """Equal up to the rounding of a sum (Prometheus' order vs an exactly rounded one)."""
    if a is None or b is None:
        return a is b
    if (a.value is None) != (b.value is None) or a.error != b.error:
        return False
    values_match = a.value is None or math.isclose(a.value, b.value or 0.0, rel_tol=1e-12)
    return values_match and a.requests == b.requests


real = pytest.mark.prometheus
module_loop = pytest.mark.asyncio(loop_scope="module")


@real
@module_loop
async def test_shared_per_rollout_and_compiled_queries_agree(prometheus: PrometheusServer) -> None:
    rollouts, settings = fleet(prometheus.url)
    shared = PrometheusProvider(settings, at=lambda: AT)
    alone = PrometheusProvider(settings, at=lambda: AT)
    compiled = PrometheusProvider(settings, at=lambda: AT)
    compiled.shares_queries = False  # the per-side PromQL, aggregated by Prometheus
    try:
        together = await asyncio.gather(*(read(shared, r, tick=True) for r in rollouts))
        separate = [await read(alone, r, tick=False) for r in rollouts]
        plain = [await read(compiled, r, tick=False) for r in rollouts]
    finally:
        for p in (shared, alone, compiled):
            await p.close()
    for r, a, b, c in zip(rollouts, together, separate, plain, strict=True):
        assert a == b, r.name  # identical, not merely close
        for name, m in a[0].items():
            assert m.canary.error is None and m.canary.value is not None, (r.name, name)
            assert close_to(m.canary, c[0][name].canary), (r.name, name)
            assert close_to(m.stable, c[0][name].stable), (r.name, name)
        assert all(close_to(x, y) for x, y in zip(a[1], c[1], strict=True))
        va = evaluate(r.analysis.metrics, a[0], r.analysis.min_requests, AT, None)
        vb = evaluate(r.analysis.metrics, b[0], r.analysis.min_requests, AT, None)
        vc = evaluate(r.analysis.metrics, c[0], r.analysis.min_requests, AT, None)
        assert va == vb
        assert [m.verdict for m in va.metrics] == [m.verdict for m in vc.metrics], r.name
    by_name = {r.name: a for r, a in zip(rollouts, together, strict=True)}
    assert by_name["alpha"][0]["server-error-ratio"].canary.value == pytest.approx(0.02)
    assert by_name["beta"][0]["server-error-ratio"].canary.value == pytest.approx(0.2)
    assert by_name["gamma"][0]["upstream-429-pressure"].canary.value == pytest.approx(0.6)
    assert by_name["beta"][1][0].value == 8.0  # beta's canary capacity, not another's

    # The shared evaluation: one query per distinct per-pod query, whatever the fleet's size.
    analysis = rollouts[0].analysis
    gate = analysis.capacity_gate
    assert gate is not None
    sources = [*analysis.metrics, gate.capacity, gate.demand]
    distinct = {q for s in sources for q in grouped_query(s, NAMESPACE, "120s").queries()}
    assert shared.client.requests_sent == len(distinct)
    assert alone.client.requests_sent > len(rollouts) * len(distinct)


async def test_closing_the_provider_ends_a_shared_query_with_an_error_for_its_members() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        rollouts, settings = fleet(url)
        provider = PrometheusProvider(settings)
        waiting = [asyncio.create_task(provider.measure(r, r.analysis, tick=AT)) for r in rollouts]
        await asyncio.sleep(0.2)  # the shared queries are in flight
        await provider.close()
        done = await asyncio.wait_for(asyncio.gather(*waiting), 5.0)
    finally:
        server.close()
        await server.wait_closed()
    for measured in done:
        for m in measured.values():
            assert m.canary.value is None and m.canary.error is not None
