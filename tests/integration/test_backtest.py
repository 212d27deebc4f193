"""`ptc backtest` against a real Prometheus holding a backfilled incident (backtest_data.py).

The zai-proxy config as shipped, replayed on ticks every 30 s that sit 5 s after the 15 s
sample grid (T - 595 s + 30 k). server-error-ratio has ``max: 0.05``, ``for: 1m`` and compare
(stable x 1.5 + 0.01) on every 5xx. v2's 502s jump from 2% to 60% with the sample at T, so:

* the tick at T + 5 s is the first whose 2 m window holds an incident increment (the ratio
  is ~0.1 either way the window's oldest sample is counted): the breach starts, ``for:`` runs;
* T + 35 s: still inconclusive (30 s of 60 s);
* T + 65 s: fail - the rollback tick.

Everything exact: the assertions name timestamps, not "some tick after T".
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from controller.core.analysis.evaluate import Verdict
from controller.core.config.load import load_config
from controller.core.config.model import Metric, PrometheusSettings, Rollout
from controller.ops import cli
from controller.ops.backtest.fetch import fetch_ranges
from controller.ops.backtest.model import BacktestResult, make_spec
from controller.ops.backtest.replay import ReplayProvider
from controller.ops.backtest.run import run_backtest
from controller.ops.backtest.selectors import Bindings, parse_side
from controller.sandbox.prometheus import PrometheusServer
from controller.shell.providers.prometheus import PrometheusProvider
from tests.integration.backtest_data import T, at, openmetrics
from tests.integration.promdata import backfilled_prometheus

REPO = Path(__file__).resolve().parents[2]
ZAI_CONFIG = REPO / "config" / "zai-proxy.yaml"

real = pytest.mark.prometheus
module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrometheusServer]:
    async with backfilled_prometheus(tmp_path_factory.mktemp("bt"), openmetrics()) as server:
        yield server


def zai(namespace: str) -> Rollout:
    rollout = load_config(ZAI_CONFIG).config.rollout("zai-proxy")
    return rollout.model_copy(update={"namespace": namespace})


async def backtest(
    server: PrometheusServer,
    namespace: str,
    start: float,
    end: float,
    bindings: Bindings | None = None,
    rollout: Rollout | None = None,
    **kwargs: Any,
) -> BacktestResult:
    spec = make_spec(rollout or zai(namespace), at(start), at(end), bindings=bindings, **kwargs)
    return await run_backtest(spec, PrometheusSettings(url=server.url), timeout=60)


def verdicts(result: BacktestResult, metric: str) -> dict[datetime, Verdict]:
    return {
        t.at: next(m.verdict for m in t.summary.metrics if m.name == metric) for t in result.ticks
    }


@real
@module_loop
async def test_incident_first_failing_tick_and_rollback_are_exact(
    prometheus: PrometheusServer,
) -> None:
    result = await backtest(prometheus, "bt-incident", -595, 305)
    s = result.summary
    bad = {m.name: m for m in s.metrics}["server-error-ratio"]
    assert bad.first_pass == at(-595)
    assert bad.first_hold == at(5)
    assert bad.first_fail == at(65)
    assert bad.breach_since == at(5)
    assert s.rollback is not None and s.rollback.at == at(65)
    assert s.first_action == s.rollback
    # The value depends on how a counter ratio is compiled (extrapolated rate() or exact
    # counts); the ticks do not: each reads the newest 15 s increment either way.
    assert re.match(
        r"analysis failed: server-error-ratio: 0\.[34]\d* \(95% bounds 0\.\d+\.\.0\.\d+ of \d+ "
        r"requests\) vs <= 0\.05, <= stable\*1\.5\+0\.01 \(stable 0\.02\)$",
        s.rollback.reason,
    ), s.rollback.reason
    by_tick = verdicts(result, "server-error-ratio")
    assert [by_tick[at(x)] for x in (-25, 5, 35, 65, 95)] == [
        Verdict.PASS,
        Verdict.INCONCLUSIVE,
        Verdict.INCONCLUSIVE,
        Verdict.FAIL,
        Verdict.FAIL,
    ]
    # The other metrics pass throughout; nothing else held.
    for name in ("rate-limited-ratio", "upstream-429-pressure", "p95-latency"):
        other = {m.name: m for m in s.metrics}[name]
        assert other.first_hold is None and other.first_fail is None, name
    # v2's limiter warmed up at T - 5m: the gate for 50% (18 rps needed) opens on that tick.
    assert s.capacity_first_hold == at(-595)
    assert s.capacity_first_pass == at(-295)
    # 4 metrics x 2 sides, their distinct request counts (the 3 ratios share one) x 2 sides,
    # and the gate's 3
    assert len(result.queries) == 15
    assert result.notes == ()


@real
@module_loop
async def test_good_period_has_no_failure(prometheus: PrometheusServer) -> None:
    """The same pods in the 10 minutes before the incident: every metric passes every tick."""
    result = await backtest(prometheus, "bt-incident", -595, -25)
    s = result.summary
    assert len(result.ticks) == 20
    assert s.counts == {"pass": 20, "inconclusive": 0, "error": 0, "fail": 0}
    assert s.rollback is None and s.max_hold is None and s.first_action is None
    assert all(m.first_fail is None and m.first_hold is None for m in s.metrics)


@real
@module_loop
async def test_fleet_wide_incident_holds_then_pauses_at_max_hold(
    prometheus: PrometheusServer,
) -> None:
    """v1 and v2 both at 60% 502: hold (stable breaches too), never fail; maxHold pauses."""
    result = await backtest(prometheus, "bt-fleet", -295, 665)
    s = result.summary
    assert s.rollback is None
    assert s.counts["fail"] == 0
    bad = {m.name: m for m in s.metrics}["server-error-ratio"]
    assert bad.first_fail is None
    assert bad.first_hold == at(5)
    assert "stable breaches too" in bad.hold_reason
    # Held from T + 5 s; maxHold 10m and onInconclusive: pause -> paused at T + 605 s.
    assert s.max_hold is not None
    assert (s.max_hold.at, s.max_hold.action) == (at(605), "pause")


@real
@module_loop
@pytest.mark.parametrize("offset", [5, 0], ids=["between-samples", "on-samples"])
async def test_replay_equals_the_controllers_instant_queries(
    prometheus: PrometheusServer, offset: int
) -> None:
    """At every tick the replayed measurements are the stock provider's, bit for bit."""
    rollout = zai("bt-incident")
    analysis = rollout.analysis
    spec = make_spec(rollout, at(-120 + offset), at(120 + offset))
    gate = analysis.capacity_gate
    assert gate is not None
    replayed = await run_backtest(spec, PrometheusSettings(url=prometheus.url), timeout=60)
    now = spec.start
    replay = ReplayProvider(PrometheusSettings(url=prometheus.url), lambda: now, Bindings())
    instant = PrometheusProvider(PrometheusSettings(url=prometheus.url), at=lambda: now)
    # The compiled per-side queries, as the replay sends them (the controller's per-pod form
    # folds the same series in Python: equal up to the rounding of a sum).
    instant.shares_queries = False
    try:
        await replay.measure(rollout, analysis)  # recording
        await replay.capacity(rollout, gate, analysis.window)
        table = await fetch_ranges(
            replay.settings,
            replay.recorded,
            spec.start,
            spec.end,
            spec.every,
            deadline=time.monotonic() + 60,
        )
        replay.replay(table)
        for tick in spec.ticks():
            now = tick
            assert await replay.measure(rollout, analysis) == await instant.measure(
                rollout, analysis
            ), tick
            window = analysis.window
            assert await replay.capacity(rollout, gate, window) == await instant.capacity(
                rollout, gate, window
            ), tick
    finally:
        await replay.close()
        await instant.close()
    assert len(replayed.ticks) == 9


@real
@module_loop
@pytest.mark.parametrize(
    "how",
    ["deployments", "pod regex", "label matchers"],
)
async def test_other_pods_are_bound_to_the_templates(
    prometheus: PrometheusServer, how: str
) -> None:
    """bt-renamed's canary ran as zai-proxy-canary: found by name, by regex or by matchers."""
    unbound = await backtest(prometheus, "bt-renamed", -25, 125)
    bad = {m.name: m for m in unbound.summary.metrics}["server-error-ratio"]
    assert unbound.summary.rollback is None
    assert bad.first_pass is None and "no data for canary" in bad.hold_reason
    assert unbound.notes == (
        "canary had no data at any tick for server-error-ratio, rate-limited-ratio, "
        "upstream-429-pressure, p95-latency: check --namespace and the pods (--deployments, "
        "--canary), or whether Prometheus still keeps this period",
    )

    rollout = zai("bt-renamed")
    bindings = None
    if how == "deployments":
        rollout = rollout.model_copy(
            update={"canary": rollout.canary.model_copy(update={"deployment": "zai-proxy-canary"})}
        )
    elif how == "pod regex":
        bindings = Bindings(canary=parse_side("zai-proxy-canary-.*", "--canary"))
    else:
        bindings = Bindings(
            canary=parse_side('namespace="bt-renamed",pod=~"zai-proxy-canary-.*"', "--canary")
        )
    bound = await backtest(prometheus, "bt-renamed", -25, 125, bindings, rollout)
    assert bound.summary.rollback is not None and bound.summary.rollback.at == at(65)


@real
@module_loop
async def test_coarser_step_keeps_the_rollback_tick_on_its_grid(
    prometheus: PrometheusServer,
) -> None:
    result = await backtest(prometheus, "bt-incident", -595, 305, every=timedelta(minutes=1))
    assert len(result.ticks) == 16
    assert result.summary.rollback is not None and result.summary.rollback.at == at(65)
    assert any("coarser than the analysis interval 30s" in n for n in result.notes)


@real
@module_loop
async def test_a_query_prometheus_rejects_is_an_error_at_every_tick(
    prometheus: PrometheusServer,
) -> None:
    """As in the controller: the metric's verdict is error (hold), never pass; maxHold acts."""
    rollout = zai("bt-incident")
    broken = Metric.model_validate(
        {"name": "broken", "query": "sum(rate(zai_proxy_requests_total[{{ window }}])", "max": 1}
    )
    analysis = rollout.analysis.model_copy(update={"metrics": [broken], "capacity_gate": None})
    rollout = rollout.model_copy(update={"analysis": analysis})
    result = await backtest(prometheus, "bt-incident", -595, 25, rollout=rollout)
    s = result.summary
    assert s.counts == {"pass": 0, "inconclusive": 0, "error": 21, "fail": 0}
    assert "unclosed left parenthesis" in s.metrics[0].hold_reason
    assert s.max_hold is not None and s.max_hold.at == at(5)  # onError: pause after 10m
    assert [n for n in result.notes if n.startswith("Prometheus rejected a query")]


# -- the command -----------------------------------------------------------------------------


def ptc(*argv: str) -> int:
    return cli.main(["backtest", "--config", str(ZAI_CONFIG), *argv])


@real
@module_loop
async def test_cli_json_and_table(
    prometheus: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    period = ["--from", "2025-12-31T23:50:05Z", "--to", "2026-01-01T00:05:05Z"]
    common = ["-n", "bt-incident", "--prometheus-url", prometheus.url, *period]
    # asyncio.run() in a thread of its own: this test's loop keeps running.
    assert await asyncio.to_thread(ptc, *common, "-o", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["rollback"]["at"] == "2026-01-01T00:01:05Z"
    assert data["summary"]["metrics"][0]["name"] == "server-error-ratio"
    assert data["summary"]["metrics"][0]["firstHold"] == "2026-01-01T00:00:05Z"
    assert len(data["ticks"]) == 31 and data["from"] == "2025-12-31T23:50:05Z"

    assert await asyncio.to_thread(ptc, *common) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert re.search(
        r"^rollback: would have rolled back at 2026-01-01 00:01:05 UTC: analysis failed: "
        r"server-error-ratio: 0\.[34]\d* \(95% bounds [^)]*\) vs <= 0\.05",
        out,
        re.MULTILINE,
    ), out
    row = next(line for line in out.splitlines() if line.startswith("2026-01-01 00:00:35"))
    assert re.search(r"  inconclusive 0\.2\d* \(s 0\.02\) breach 30s  ", row), row


@real
@module_loop
async def test_cli_html_has_the_chart_and_the_answer(
    prometheus: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["-n", "bt-incident", "--prometheus-url", prometheus.url, "-o", "html"]
    period = ["--from", str(T - 595), "--to", str(T + 305)]
    assert await asyncio.to_thread(ptc, *args, *period) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "would have rolled back at 2026-01-01 00:01:05 UTC" in page
    assert "ROLLBACK: server-error-ratio" in page
    assert "<script" not in page and 'src="' not in page
