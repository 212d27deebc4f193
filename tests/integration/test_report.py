"""`ptc report`: the files a postmortem reader gets, and the fetch path against the sandbox.

- HTML of a rolled-back rollout names the rollback, the failing metric and its threshold, and
  who paused it, and references nothing outside itself;
- PNG decodes to the requested size;
- headless Chromium renders the HTML offline without console errors (screenshot saved under
  artifacts/ for a person to look at);
- a Service carrying the state in the sandbox API server -> the report files, with series
  from a stand-in Prometheus (range queries checked) or without one (a note, not a failure).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controller.core.config import load_config_text
from controller.core.state import HISTORY_LIMIT, STATE_ANNOTATION, DecisionRecord, encode_state
from controller.ops import cli
from controller.ops.report import ReportError, ReportSeries, render_report
from controller.ops.report.chart import build_figure
from controller.ops.report.command import make_report
from controller.ops.report.errors import BadReportRequest
from controller.ops.report.fetch import ReportRequest, load_state
from controller.ops.report.model import MetricSeries, Point
from controller.ops.report.timeline import build_timeline
from controller.sandbox.apiserver import ApiServer
from controller.shell import history
from controller.shell.kube import Kube
from tests.sandbox.conftest import service
from tests.unit.test_report_timeline import CONFIG, T0, at, rolled_back_state

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
# Attributes through which a page loads something; CSS can load with url() and @import.
_LOADING_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "poster", "data", "action"}


class _References(HTMLParser):
    """Every URL the page would load: attributes above, and url()/@import in CSS."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if name in _LOADING_ATTRIBUTES:
                self.urls.append(value.strip())
            if name == "style":
                self.urls.extend(_css_urls(value))

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls.extend(_css_urls(data))

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False


def _css_urls(css: str) -> list[str]:
    found = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    found += re.findall(r"@import\s+['\"]([^'\"]+)", css)
    return found


def external_references(html: str) -> list[str]:
    """URLs the page would fetch: anything but data: URIs and in-page #fragments."""
    parser = _References()
    parser.feed(html)
    return [u for u in parser.urls if not (u.startswith("data:") or u.startswith("#"))]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# ---------------------------------------------------------------------------------------------
# files


def test_html_names_the_rollback_and_references_nothing_outside(tmp_path: Path) -> None:
    (path,) = render_report(rolled_back_state(), None, tmp_path / "web.html", namespace="shop")
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # The decisions, in the table and on the chart.
    assert ">rollback</td>" in html
    assert ">rolled-back</td>" in html
    assert "analysis failed: bad-gateway-ratio 0.12 vs &lt;= 0.05" in html
    assert 'class="v-fail">fail</span> 0.12 (stable 0.01) vs &lt;= 0.05' in html
    assert "<b>bad-gateway-ratio</b>" in html
    assert html.count(">alice</td>") == 2  # paused and resumed by alice
    assert "paused by alice" in html
    assert "<svg" in html and "</svg>" in html
    # Self-contained: nothing to fetch, and no URL at all (the state carries none).
    assert external_references(html) == []
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html


def test_html_lists_prometheus_queries_and_notes(tmp_path: Path) -> None:
    series = ReportSeries(
        weight_actual=(Point(at(1), 20.0), Point(at(5), 50.0)),
        metrics={
            "bad-gateway-ratio": MetricSeries(
                (Point(at(9), 0.1),), (Point(at(9), 0.01),), 'sum(rate(x{pod=~"web-v2"}[2m]))', "q2"
            )
        },
        source="Prometheus http://127.0.0.1:9",
        notes=("Prometheus returned no samples for: p95-latency",),
    )
    (path,) = render_report(rolled_back_state(), series, tmp_path / "web.html")
    html = path.read_text()
    assert "sum(rate(x{pod=~&quot;web-v2&quot;}[2m]))" in html
    assert "Prometheus returned no samples for: p95-latency" in html
    # The Prometheus URL is named as text, never loaded.
    assert external_references(html) == []


@pytest.mark.parametrize(("width", "height"), [(1600, 900), (1000, 640), (1234, 567)])
def test_png_has_the_requested_size(tmp_path: Path, width: int, height: int) -> None:
    (path,) = render_report(
        rolled_back_state(), None, tmp_path / "web.png", width=width, height=height
    )
    data = path.read_bytes()
    assert png_size(data) == (width, height)
    from PIL import Image  # matplotlib depends on pillow

    with Image.open(path) as image:
        image.load()  # decodes every pixel, not just the header
        assert image.size == (width, height)
        assert image.format == "PNG"


def test_one_call_writes_several_formats(tmp_path: Path) -> None:
    written = render_report(
        rolled_back_state(), None, [tmp_path / "a.html", tmp_path / "a.png", tmp_path / "a.svg"]
    )
    assert [p.name for p in written] == ["a.html", "a.png", "a.svg"]
    svg = (tmp_path / "a.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg


def test_unknown_format_and_silly_sizes_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadReportRequest, match=r"\.html, \.png or \.svg"):
        render_report(rolled_back_state(), None, tmp_path / "web.pdf")
    with pytest.raises(BadReportRequest, match="out of range"):
        render_report(rolled_back_state(), None, tmp_path / "web.png", width=10)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_chromium_renders_the_report_offline_without_console_errors(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "chromium not installed (apt-get install -y --no-install-recommends chromium); "
            "CI installs it"
        )
    (page,) = render_report(rolled_back_state(), None, tmp_path / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-rolled-back.png"
    shot.unlink(missing_ok=True)
    profile = tempfile.mkdtemp(prefix="ptc-chromium-")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        # No network at all: any fetch the page tried would fail (and log an error).
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    try:
        shot_run = subprocess.run(
            [browser, *flags, f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=90,
        )
        dom_run = subprocess.run(
            [browser, *flags, "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot_run.returncode == 0, shot_run.stderr[-2000:]
    assert dom_run.returncode == 0, dom_run.stderr[-2000:]
    for run in (shot_run, dom_run):
        problems = [
            line
            for line in run.stderr.splitlines()
            if "Uncaught" in line
            or "ERROR:CONSOLE" in line
            or ":CONSOLE(" in line
            or "net::ERR_" in line
        ]
        assert problems == [], "\n".join(problems)
    # The browser built the page: the chart and every decision row are in its DOM.
    dom = dom_run.stdout
    assert "<svg" in dom
    assert dom.count("<tr class=") == len(rolled_back_state().history)
    assert png_size(shot.read_bytes()) == (1400, 2000)


# ---------------------------------------------------------------------------------------------
# the fetch path: sandbox API server (+ a stand-in Prometheus)


@dataclass
class FakePrometheus:
    """Answers /api/v1/query_range like Prometheus; records each query it was asked."""

    url: str = ""
    queries: list[dict[str, str]] = field(default_factory=list)
    fail: bool = False


@pytest.fixture
async def prometheus() -> AsyncIterator[FakePrometheus]:
    fake = FakePrometheus()

    async def query_range(request: web.Request) -> web.Response:
        params = dict(request.query)
        fake.queries.append(params)
        if fake.fail:
            body = {"status": "error", "errorType": "bad_data", "error": "parse error"}
            return web.json_response(body, status=400)
        start, end = float(params["start"]), float(params["end"])
        step = float(params["step"].rstrip("s"))
        query = params["query"]
        result: list[dict[str, Any]] = []

        def series(labels: dict[str, str], value: Any) -> None:
            times = [start + i * step for i in range(int((end - start) // step) + 1)]
            result.append({"metric": labels, "values": [[t, str(value(t))] for t in times]})

        rollback_at = at(10).timestamp()
        if query.startswith("ptc_rollout_weight_actual_percent"):
            series({"rollout": "web"}, lambda t: 0 if t < at(1).timestamp() else 25)
        elif "web-v2" in query:  # canary side of a metric
            series({}, lambda t: 0.12 if t >= rollback_at - 120 else 0.003)
        else:
            series({}, lambda t: 0.01)
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    app = web.Application()
    app.router.add_get("/api/v1/query_range", query_range)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def _annotated_service(state_json: str, name: str = "web") -> dict[str, Any]:
    svc = service(name, {"app": "web"})
    svc["metadata"]["annotations"] = {STATE_ANNOTATION: state_json}
    return svc


def _config(prometheus_url: str) -> Any:
    text = CONFIG.replace("namespace: shop", "namespace: default")
    text = f"prometheus:\n  url: {prometheus_url}\n  timeout: 5s\n" + text
    return load_config_text(text, "web.yaml").config


async def test_report_from_the_services_state_without_prometheus(
    api_server: ApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    api_server.create(service("other", {"app": "other"}))
    api_server.create(_annotated_service(encode_state(rolled_back_state()), name="web-svc"))
    request = ReportRequest(rollout="web", kubeconfig=str(kubeconfig), timeout=10)
    written = await make_report(request, [tmp_path / "web.html", tmp_path / "web.png"])
    assert [p.name for p in written] == ["web.html", "web.png"]
    html = (tmp_path / "web.html").read_text()
    assert ">rolled-back</td>" in html and ">alice</td>" in html
    assert "decision records only (no Prometheus)" in html
    assert png_size((tmp_path / "web.png").read_bytes()) == (1600, 900)


async def test_report_with_config_and_prometheus_range_queries(
    api_server: ApiServer, kubeconfig: Path, tmp_path: Path, prometheus: FakePrometheus
) -> None:
    api_server.create(_annotated_service(encode_state(rolled_back_state())))
    request = ReportRequest(
        rollout="web", kubeconfig=str(kubeconfig), config=_config(prometheus.url), timeout=10
    )
    await make_report(request, [tmp_path / "web.html"], width=1200)
    html = (tmp_path / "web.html").read_text()
    queries = [q["query"] for q in prometheus.queries]
    assert 'ptc_rollout_weight_actual_percent{namespace="default",rollout="web"}' in queries
    # Each configured metric, compiled for canary and for stable.
    ratio = [q for q in queries if 'code="502"' in q]
    assert len(ratio) == 2 and any("web-v2" in q for q in ratio)
    assert sum("budget_left" in q for q in queries) == 2
    # The range covers the rollout (10m42s) with a margin, at a step giving ~600 points.
    q = prometheus.queries[0]
    assert float(q["start"]) < T0.timestamp() and float(q["end"]) > at(10.7).timestamp()
    assert q["step"] == "2"  # seconds
    assert f"Prometheus {prometheus.url}" in html
    assert "code=&quot;502&quot;" in html  # the queries are listed for the reader
    assert "desired weight</dt><dd>per step from the config" in html
    assert external_references(html) == []


async def test_prometheus_failures_are_notes_not_a_failed_report(
    api_server: ApiServer, kubeconfig: Path, tmp_path: Path, prometheus: FakePrometheus
) -> None:
    api_server.create(_annotated_service(encode_state(rolled_back_state())))
    prometheus.fail = True
    request = ReportRequest(
        rollout="web", kubeconfig=str(kubeconfig), prometheus_url=prometheus.url, timeout=10
    )
    await make_report(request, [tmp_path / "web.html"])
    html = (tmp_path / "web.html").read_text()
    assert "range queries failed: HTTP 400 bad_data: parse error" in html
    # Without the config: the values ptc exported are asked for, not compiled queries.
    assert {q["query"].split("{")[0] for q in prometheus.queries} == {
        "ptc_rollout_weight_actual_percent",
        "ptc_analysis_value",
    }


async def test_unknown_rollout_and_unstarted_rollout_are_bad_input(
    api_server: ApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    api_server.create(_annotated_service(encode_state(rolled_back_state())))
    api_server.create(service("fresh", {"app": "fresh"}))
    with pytest.raises(BadReportRequest, match="no rollout 'nope'"):
        await make_report(
            ReportRequest(rollout="nope", kubeconfig=str(kubeconfig), timeout=10),
            [tmp_path / "x.html"],
        )
    with pytest.raises(BadReportRequest, match="has not started"):
        await make_report(
            ReportRequest(rollout="fresh", kubeconfig=str(kubeconfig), timeout=10),
            [tmp_path / "x.html"],
        )
    assert not (tmp_path / "x.html").exists()


async def test_unreadable_state_is_a_runtime_failure(
    api_server: ApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    api_server.create(_annotated_service(json.dumps({"v": 99, "phase": "x", "target": "t"})))
    with pytest.raises(ReportError, match="newer ptc"):
        await make_report(
            ReportRequest(rollout="web", kubeconfig=str(kubeconfig), timeout=10),
            [tmp_path / "x.html"],
        )


async def test_ptc_report_command_line(
    api_server: ApiServer, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_server.create(_annotated_service(encode_state(rolled_back_state())))
    html, png = tmp_path / "web.html", tmp_path / "web.png"
    argv = ["report", "web", "--kubeconfig", str(kubeconfig), "-o", str(html), "-o", str(png)]
    # main() runs its own event loop: give it a thread, as the console script would a process.
    code = await asyncio.to_thread(cli.main, [*argv, "--width", "900", "--height", "500"])
    assert code == 0, capsys.readouterr().err
    assert f"wrote {html}" in capsys.readouterr().out
    assert png_size(png.read_bytes()) == (900, 500)
    bad = await asyncio.to_thread(cli.main, [*argv[:4], "-o", str(tmp_path / "x.pdf")])
    assert bad == 2
    assert "name the file .html, .png or .svg" in capsys.readouterr().err
    missing = await asyncio.to_thread(
        cli.main, ["report", "nope", "--kubeconfig", str(kubeconfig), "-o", str(html)]
    )
    assert missing == 2


def test_every_decision_gets_a_label_even_when_crowded() -> None:
    state = rolled_back_state()
    crowded = tuple(
        DecisionRecord(at(i * 0.2), "holding", 1, ("paused", "resumed")[i % 2], "x", by="bob")
        for i in range(HISTORY_LIMIT)
    )
    timeline = build_timeline(replace(state, history=crowded))
    fig = build_figure(timeline, 800, 600)
    strip = fig.axes[0]
    labels = [t.get_text() for t in strip.texts if t.get_text().split(" ")[0].isdigit()]
    assert sorted(int(label.split(" ")[0]) for label in labels) == list(range(1, HISTORY_LIMIT + 1))
    assert any(label.endswith("by bob") for label in labels)


async def test_report_reads_the_full_history_from_the_history_configmap(
    api_server: ApiServer, kubeconfig: Path
) -> None:
    """The annotation keeps the last decisions; the report shows every one, with readings."""
    base = rolled_back_state()
    early = tuple(
        DecisionRecord(T0 - timedelta(minutes=30 - i), "progressing", 0, "wait", f"early {i}")
        for i in range(15)
    )
    state = replace(base, history=(*early, *base.history))
    api_server.create(_annotated_service(encode_state(state)))
    data = {"target": state.revision, "history": history.encode(state.history)}
    api_server.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ptc-history-web", "namespace": "default"},
            "data": data,
        }
    )
    kube = await Kube.connect(str(kubeconfig))
    try:
        loaded, _ = await load_state(kube, "default", "web", "web")
        assert loaded.history == state.history  # all of them, readings included
        # A ConfigMap of another rollout target is not this rollout's history.
        other = replace(state, identity=replace(state.identity, revision="another"))
        api_server.patch(
            "services",
            "web",
            {"metadata": {"annotations": {STATE_ANNOTATION: encode_state(other)}}},
        )
        loaded, _ = await load_state(kube, "default", "web", "web")
        assert len(loaded.history) == HISTORY_LIMIT
    finally:
        await kube.close()
