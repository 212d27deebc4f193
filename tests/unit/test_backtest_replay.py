"""`ptc backtest`: the replaying provider (the controller's provider on range data), the range
client's failure classes, and the CLI's refusals - bad input exits 2, an unreachable or silent
Prometheus exits 1, one line each."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from controller.core.analysis.evaluate import Measurement, Sample
from controller.core.config import load_config_text
from controller.core.config.model import PrometheusSettings, Rollout
from controller.ops.backtest.fetch import FetchError, RangeTable, Series, fetch_ranges, to_ms
from controller.ops.backtest.replay import ReplayProvider
from controller.ops.backtest.selectors import Bindings, parse_side
from controller.ops.cli import main

AT = datetime(2026, 1, 13, 14, 0, tzinfo=UTC)
MS = to_ms(AT)

CONFIG = """\
prometheus: {url: "http://127.0.0.1:9"}
rollouts:
  - name: web
    service: web
    stable: {deployment: web}
    canary: {deployment: web-v2, version: v2}
    steps: [{weight: 20}, {weight: 50}]
    analysis:
      interval: 30s
      metrics:
        - name: errors
          counterRatio: {metric: http_requests_total, numerator: {code: "500"}}
          max: 0.05
          compare: {}
        - name: limit
          gauge: {metric: limit_rps}
          min: 1
"""


@pytest.fixture
def rollout() -> Rollout:
    return load_config_text(CONFIG).config.rollout("web")


async def _record(rollout: Rollout, bindings: Bindings | None = None) -> list[str]:
    provider = ReplayProvider(PrometheusSettings(), lambda: AT, bindings or Bindings())
    try:
        await provider.measure(rollout, rollout.analysis)
        return provider.recorded
    finally:
        await provider.close()


async def test_recording_lists_the_runners_queries(rollout: Rollout) -> None:
    recorded = await _record(rollout)
    # errors: value and request count on canary and stable (compare); limit: canary value.
    assert len(recorded) == 5
    assert sum("limit_rps" in q for q in recorded) == 1
    assert all('pod=~"web-v2-' in q for q in recorded if "limit_rps" in q)
    bound = await _record(rollout, Bindings(canary=parse_side("web-v3-.*", "--canary")))
    assert any('pod=~"web-v3-.*"' in q for q in bound)
    assert not any("web-v2" in q for q in bound)


async def test_replay_answers_as_an_instant_query_would(rollout: Rollout) -> None:
    recorded = await _record(rollout)
    value, count, stable_value, stable_count, limit = recorded
    one = {"namespace": "default"}
    table = RangeTable(
        series={
            value: [Series({}, {MS: "0.02", MS + 30_000: "NaN"})],
            count: [Series({}, {MS: "1200", MS + 30_000: "0"})],
            stable_value: [Series({}, {MS: "0.01"})],
            limit: [Series(one | {"pod": "a"}, {MS: "5"}), Series(one | {"pod": "b"}, {MS: "7"})],
        },
        # A query Prometheus rejected: its error at every tick, as the provider reports it.
        errors={stable_count: 'HTTP 400 bad_data: parse error at char 3: "x"'},
    )
    provider = ReplayProvider(PrometheusSettings(), lambda: now, Bindings())
    provider.replay(table)
    try:
        now = AT
        measured = await provider.measure(rollout, rollout.analysis)
        now = datetime.fromtimestamp((MS + 30_000) / 1000, UTC)
        later = await provider.measure(rollout, rollout.analysis)
    finally:
        await provider.close()

    errors = measured["errors"]
    assert errors.canary == Sample(0.02, requests=1200.0)
    assert errors.stable is not None and errors.stable.value == 0.01
    assert errors.stable.error is not None
    assert errors.stable.error.startswith("request count: HTTP 400 bad_data: parse error")
    limit_sample = measured["limit"].canary
    assert limit_sample.value is None and limit_sample.error is not None
    assert "expected one series, got 2" in limit_sample.error
    # 30 s later: NaN is no data, a missing series is no data.
    assert later["errors"].canary == Sample(None, requests=0.0)
    assert later["limit"] == Measurement("limit", Sample(None))


# -- the CLI's refusals ----------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "ptc.yaml"
    path.write_text(CONFIG)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["backtest", *argv])
    out, err = capsys.readouterr()
    return code, out, err


PERIOD = ("--from", "2026-01-13T14:00:00Z", "--to", "2026-01-13T15:00:00Z")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "yesterday", "--to", "now"), "--from 'yesterday' is not a time: use"),
        (("--from", "now", "--to", "now-1h"), "--to ("),
        (("--rollout", "api", *PERIOD), "no rollout named 'api' (rollouts in this file: web)"),
        (("--canary", "pod=web", *PERIOD), "--canary 'pod=web': not label matchers"),
        (("--deployments", "a", "b", "--canary", "x", *PERIOD), "exclude each other"),
        (("--deployments", "A_B", "b", *PERIOD), "'A_B' is not a Deployment name"),
        (("--at-step", "5", *PERIOD), "--at-step 5: rollout 'web' has steps 1..2"),
        (("--step", "soon", *PERIOD), "--step: expected a duration"),
        (("--from", "now-30d", "--to", "now"), "more than 11000: shorten the period or coarsen"),
        (("--timeout", "0", *PERIOD), "--timeout must be positive"),
        (("--prometheus-url", "notaurl", *PERIOD), "'notaurl': expected http(s)://HOST"),
        (("--prometheus-url", "http://h:99999", *PERIOD), "not a valid URL: Port out of range"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], config: str, args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "--config", config, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("ptc: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_invalid_config_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollouts: [{name: web}]\n")
    code, _, err = run(capsys, "--config", str(bad), *PERIOD)
    assert code == 2 and "bad.yaml" in err and "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_prometheus_exits_1(capsys: pytest.CaptureFixture[str], config: str) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    code, out, err = run(capsys, "--config", config, *PERIOD, "--prometheus-url", url)
    assert code == 1 and out == ""
    assert err.startswith(
        f"ptc backtest: Prometheus {url}: cannot connect to {url}: connection refused"
    )
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_silent_prometheus_ends_at_the_timeout(
    capsys: pytest.CaptureFixture[str], config: str
) -> None:
    with silent_server() as url:
        began = time.monotonic()
        code, out, err = run(
            capsys, "--config", config, *PERIOD, "--prometheus-url", url, "--timeout", "1"
        )
        took = time.monotonic() - began
    assert code == 1 and out == ""
    assert f"Prometheus {url} did not answer within the time left of --timeout" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert took < 6, took  # 1 s budget; generous for a busy machine, far from a hang


def test_help_explains_selectors_times_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["backtest", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for needed in ("--deployments STABLE CANARY", "label matchers", "now-2h", "example:", "--step"):
        assert needed in text, needed


# -- the range client against a stand-in Prometheus --------------------------------------------


@contextlib.asynccontextmanager
async def stand_in(answers: list[tuple[int, str]]) -> AsyncIterator[tuple[str, list[str]]]:
    """A server answering each query_range with the next (status, body); queries recorded."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.query["query"])
        status, body = answers[min(len(seen), len(answers)) - 1]
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/query_range", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


MATRIX = json.dumps(
    {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[MS / 1000, "1.5"], [MS / 1000 + 30, "2"]]}],
        },
    }
)


def _error(status_error: str, error: str) -> str:
    return json.dumps({"status": "error", "errorType": status_error, "error": error})


async def _fetch(url: str, queries: list[str]) -> RangeTable:
    return await fetch_ranges(
        PrometheusSettings(url=url),
        queries,
        AT,
        AT + timedelta(seconds=30),
        timedelta(seconds=30),
        deadline=time.monotonic() + 10,
    )


async def test_range_results_are_keyed_by_millisecond_ticks() -> None:
    async with stand_in([(200, MATRIX)]) as (url, seen):
        table = await _fetch(url, ["up", "up"])
    assert seen == ["up"]  # each distinct query once
    assert table.at("up", MS) == [{"metric": {}, "value": [MS / 1000, "1.5"]}]
    assert table.at("up", MS + 30_000)[0]["value"][1] == "2"
    assert table.at("up", MS + 1) == []


async def test_a_rejected_query_is_that_querys_error_not_the_backtests() -> None:
    parse = _error("bad_data", "1:5: parse error: unclosed left parenthesis")
    async with stand_in([(400, parse)]) as (url, _):
        table = await _fetch(url, ["sum(rate(x[2m])"])
    assert table.errors == {
        "sum(rate(x[2m])": "HTTP 400 bad_data: 1:5: parse error: unclosed left parenthesis"
    }


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (
            [(400, _error("bad_data", 'invalid parameter "step": zero or negative step'))],
            'refused the range query: HTTP 400 bad_data: invalid parameter "step"',
        ),
        (
            [(400, _error("bad_data", "exceeded maximum resolution of 11,000 points"))],
            "refused the range query",
        ),
        ([(200, "<html>login</html>")], "did not answer as Prometheus does (HTTP 200)"),
        ([(503, "overloaded")] * 3, "HTTP 503 overloaded after 3 attempts (query: up)"),
    ],
    ids=["bad-step", "too-many-points", "not-prometheus", "503-thrice"],
)
async def test_prometheus_failures_abort_the_backtest(
    answers: list[tuple[int, str]], message: str
) -> None:
    async with stand_in(answers) as (url, _):
        with pytest.raises(FetchError, match=re.escape(message)):
            await _fetch(url, ["up"])


async def test_a_transient_failure_is_retried() -> None:
    async with stand_in([(503, "busy"), (200, MATRIX)]) as (url, seen):
        table = await _fetch(url, ["up"])
    assert len(seen) == 2 and table.at("up", MS) != []
