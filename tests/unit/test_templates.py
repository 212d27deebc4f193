"""Query templates and structured metrics -> PromQL, per side."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from controller.core.analysis.templates import (
    KNOWN_VARIABLES,
    QueryContext,
    TemplateError,
    counted,
    matcher_text,
    pod_regex,
    promql_duration,
    render,
    unknown_variables,
    variables_in,
)
from controller.core.config import Rollout, Side, load_config
from controller.core.config.model import Metric, Source

REPO = Path(__file__).resolve().parents[2]

CANARY_SEL = 'namespace="devpod",pod=~"zai-proxy-v2-[a-z0-9]{1,10}-[a-z0-9]{5}"'
STABLE_SEL = 'namespace="devpod",pod=~"zai-proxy-[a-z0-9]{1,10}-[a-z0-9]{5}"'
SERVICE_SEL = (
    'namespace="devpod",'
    'pod=~"(zai-proxy-[a-z0-9]{1,10}-[a-z0-9]{5}|zai-proxy-v2-[a-z0-9]{1,10}-[a-z0-9]{5})"'
)
SELECTORS = {Side.CANARY: CANARY_SEL, Side.STABLE: STABLE_SEL, Side.SERVICE: SERVICE_SEL}


@pytest.fixture(scope="module")
def zai() -> Rollout:
    return load_config(REPO / "config" / "zai-proxy.yaml").config.rollout("zai-proxy")


@pytest.fixture
def ctx(zai: Rollout) -> QueryContext:
    return QueryContext(zai, timedelta(minutes=2))


def unquote_promql(text: str) -> str:
    """The value of a double-quoted PromQL string body (Go escapes: \\\\ and \\")."""
    return re.sub(r"\\(.)", r"\1", text)


# ---------------------------------------------------------------------------------------------
# Structured metrics


def test_counted_counts_each_series_from_its_first_event() -> None:
    """Exact per-series counts: last - start, the whole value of a series new in the window,
    increase() only for a series that reset (real-Prometheus values in
    tests/integration/test_counter_first_appearance.py)."""
    assert counted('m{a="b"}', "120s") == (
        '((last_over_time(m{a="b"}[120s]) - m{a="b"} offset 120s) '
        'unless resets(m{a="b"}[120s]) > 0) '
        'or (last_over_time(m{a="b"}[120s]) unless m{a="b"} offset 120s) '
        'or increase(m{a="b"}[120s])'
    )


@pytest.mark.parametrize("side", [Side.CANARY, Side.STABLE, Side.SERVICE])
def test_counter_ratio(ctx: QueryContext, zai: Rollout, side: Side) -> None:
    sel = SELECTORS[side]
    q = ctx.compile(pack_metric(zai, "rate-limited-ratio"), side)
    assert q.side is side
    num = counted(f'zai_proxy_requests_total{{{sel},status_code="429"}}', "120s")
    den = counted(f"zai_proxy_requests_total{{{sel}}}", "120s")
    assert q.value == f"(sum({num}) or vector(0)) / sum({den})"
    # The sample counts the denominator's requests.
    assert q.sample == f"sum({den})"


def test_counter_ratio_with_denominator_matchers(zai: Rollout) -> None:
    source = Source.model_validate(
        {
            "counterRatio": {
                "metric": "http_requests_total",
                "numerator": {"code": "=~5.."},
                "denominator": {"route": "!=/health"},
            }
        }
    )
    q = QueryContext(zai, timedelta(seconds=30)).compile(source, Side.CANARY)
    num = counted(f'http_requests_total{{{CANARY_SEL},code=~"5.."}}', "30s")
    den = counted(f'http_requests_total{{{CANARY_SEL},route!="/health"}}', "30s")
    assert q.value == f"(sum({num}) or vector(0)) / sum({den})"
    assert q.sample == f"sum({den})"


def pack_metric(zai: Rollout, name: str) -> Metric:
    return next(m for m in zai.analysis.metrics if m.name == name)


@pytest.mark.parametrize("side", [Side.CANARY, Side.STABLE])
def test_upstream_pressure_counts_one_counter_per_request_of_another(
    ctx: QueryContext, zai: Rollout, side: Side
) -> None:
    sel = SELECTORS[side]
    q = ctx.compile(pack_metric(zai, "upstream-429-pressure"), side)
    num = counted(f'zai_proxy_upstream_errors_total{{{sel},error_type="429"}}', "120s")
    den = counted(f"zai_proxy_requests_total{{{sel}}}", "120s")
    assert q.value == f"(sum({num}) or vector(0)) / sum({den})"
    assert q.sample == f"sum({den})"  # minRequests counts client requests


@pytest.mark.parametrize("side", [Side.CANARY, Side.STABLE])
def test_histogram_quantile(ctx: QueryContext, zai: Rollout, side: Side) -> None:
    sel = SELECTORS[side]
    q = ctx.compile(pack_metric(zai, "p95-latency"), side)
    m = f'{sel},status_code=~"2.."'  # the pack times answered 2xx only
    assert q.value == (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(zai_proxy_request_duration_seconds_bucket{{{m}}}[120s])))"
    )
    assert q.sample == f"sum(increase(zai_proxy_request_duration_seconds_count{{{m}}}[120s]))"


@pytest.mark.parametrize("side", [Side.CANARY, Side.STABLE])
def test_gauge(ctx: QueryContext, zai: Rollout, side: Side) -> None:
    assert zai.analysis.capacity_gate is not None
    q = ctx.compile(zai.analysis.capacity_gate.capacity, side)
    assert q.value == f"sum(zai_proxy_rate_limit_requests_per_second{{{SELECTORS[side]}}})"
    assert q.sample is None


def test_gauge_aggregate_and_matchers(ctx: QueryContext) -> None:
    source = Source.model_validate(
        {"gauge": {"metric": "up", "aggregate": "min", "matchers": {"job": "zai"}}}
    )
    assert ctx.compile(source, Side.STABLE).value == f'min(up{{{STABLE_SEL},job="zai"}})'


@pytest.mark.parametrize("side", [Side.CANARY, Side.STABLE, Side.SERVICE])
def test_rate(ctx: QueryContext, zai: Rollout, side: Side) -> None:
    assert zai.analysis.capacity_gate is not None
    q = ctx.compile(zai.analysis.capacity_gate.demand, side)
    sel = SELECTORS[side]
    assert q.value == f"sum(rate(zai_proxy_requests_total{{{sel}}}[120s]))"
    assert q.sample == f"sum(increase(zai_proxy_requests_total{{{sel}}}[120s]))"


def test_window_follows_the_context(zai: Rollout) -> None:
    q = QueryContext(zai, timedelta(seconds=90.5)).compile(zai.analysis.metrics[0], Side.CANARY)
    assert "[90500ms]" in q.value and "[120s]" not in q.value


def test_source_with_nothing_set(ctx: QueryContext) -> None:
    with pytest.raises(ValueError, match=r"^source has no query or structured metric$"):
        ctx.compile(Source(), Side.CANARY)


# ---------------------------------------------------------------------------------------------
# Raw templates


def test_raw_query_with_side_bound_variables(ctx: QueryContext) -> None:
    source = Source.model_validate(
        {
            "query": 'sum(rate(x{ {{selector}} ,deployment="{{ deployment }}",'
            'version="{{ version }}"}[{{ window }}])) / on() {{ service }}'
        }
    )
    sample = 'sum(increase(x{pod=~"{{ pod_regex }}"}[{{ window }}]))'
    canary = ctx.compile(source, Side.CANARY, sample_query=sample)
    assert canary.value == (
        f'sum(rate(x{{ {CANARY_SEL} ,deployment="zai-proxy-v2",version="v2"}}[120s])) / on() '
        "zai-proxy"
    )
    assert canary.sample == 'sum(increase(x{pod=~"zai-proxy-v2-[a-z0-9]{1,10}-[a-z0-9]{5}"}[120s]))'
    stable = ctx.compile(source, Side.STABLE)
    assert stable.value == (
        f'sum(rate(x{{ {STABLE_SEL} ,deployment="zai-proxy",version=""}}[120s])) / on() zai-proxy'
    )
    assert stable.sample is None


def test_variables_per_side(ctx: QueryContext) -> None:
    common = {
        "namespace": "devpod",
        "service": "zai-proxy",
        "window": "120s",
        "stable_deployment": "zai-proxy",
        "canary_deployment": "zai-proxy-v2",
        "stable_version": "",
        "canary_version": "v2",
        "stable_pod_regex": "zai-proxy-[a-z0-9]{1,10}-[a-z0-9]{5}",
        "canary_pod_regex": "zai-proxy-v2-[a-z0-9]{1,10}-[a-z0-9]{5}",
        "service_pod_regex": (
            "(zai-proxy-[a-z0-9]{1,10}-[a-z0-9]{5}|zai-proxy-v2-[a-z0-9]{1,10}-[a-z0-9]{5})"
        ),
    }
    assert ctx.variables(Side.CANARY) == common | {
        "deployment": "zai-proxy-v2",
        "version": "v2",
        "pod_regex": common["canary_pod_regex"],
        "selector": CANARY_SEL,
    }
    assert ctx.variables(Side.SERVICE) == common | {
        "deployment": "",
        "version": "",
        "pod_regex": common["service_pod_regex"],
        "selector": SERVICE_SEL,
    }
    assert set(ctx.variables(Side.STABLE)) == KNOWN_VARIABLES


def test_custom_selectors_use_side_variables(zai: Rollout) -> None:
    data = zai.model_dump(mode="json", by_alias=True)
    data["analysis"]["selectors"] = {
        "canary": 'app="zai-proxy",version="{{ version }}"',
        "stable": 'app="zai-proxy",version=""',
        "service": 'app="zai-proxy"',
    }
    custom = QueryContext(Rollout.model_validate(data), timedelta(minutes=1))
    q = custom.compile(pack_metric(zai, "server-error-ratio"), Side.CANARY)
    num = counted(
        'zai_proxy_requests_total{app="zai-proxy",version="v2",status_code=~"5.."}', "60s"
    )
    den = counted('zai_proxy_requests_total{app="zai-proxy",version="v2"}', "60s")
    assert q.value == f"(sum({num}) or vector(0)) / sum({den})"


def test_unknown_variable_is_a_template_error(ctx: QueryContext) -> None:
    source = Source.model_validate({"query": 'sum(x{ns="{{ namespase }}"})'})
    with pytest.raises(TemplateError, match=r"unknown template variable \{\{ namespase \}\}"):
        ctx.compile(source, Side.CANARY)
    with pytest.raises(TemplateError) as info:
        render("{{ a }} and {{ b }}", {"a": "1"})
    assert str(info.value).startswith(
        "unknown template variable {{ b }} (known: canary_deployment,"
    )
    assert isinstance(info.value, ValueError)


def test_render_and_variable_listing() -> None:
    assert render("{{a}}-{{  b  }}-{{ a }}", {"a": "1", "b": "2"}) == "1-2-1"
    assert render('sum(x{a="b"})', {}) == 'sum(x{a="b"})'  # PromQL braces are not placeholders
    assert variables_in("{{a}} x {{ window }} {{ nope }}") == ["a", "window", "nope"]
    assert unknown_variables("{{a}} x {{ window }} {{ nope }}") == ["a", "nope"]
    assert unknown_variables('rate(x{pod=~"{{ pod_regex }}"}[{{ window }}])') == []


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=2), "120s"),
        (timedelta(seconds=1), "1s"),
        (timedelta(milliseconds=1500), "1500ms"),
        (timedelta(0), "0s"),
    ],
)
def test_promql_duration(delta: timedelta, text: str) -> None:
    assert promql_duration(delta) == text


# ---------------------------------------------------------------------------------------------
# Pod regexes and matchers


def test_pod_regex_matches_its_deployments_pods_only() -> None:
    pattern = unquote_promql(pod_regex("zai-proxy"))
    assert re.fullmatch(pattern, "zai-proxy-7d9f8b6c5d-x2x9k")
    assert not re.fullmatch(pattern, "zai-proxy-v2-7d9f8b6c5d-x2x9k")
    assert not re.fullmatch(pattern, "zai-proxy-7d9f8b6c5d")
    assert not re.fullmatch(pattern, "other-zai-proxy-7d9f8b6c5d-x2x9k")
    v2 = unquote_promql(pod_regex("zai-proxy-v2"))
    assert re.fullmatch(v2, "zai-proxy-v2-7d9f8b6c5d-x2x9k")
    assert not re.fullmatch(v2, "zai-proxy-7d9f8b6c5d-x2x9k")


def test_pod_regex_escapes_dots_for_a_promql_string() -> None:
    text = pod_regex("api.v1")
    assert text == "api\\\\.v1-[a-z0-9]{1,10}-[a-z0-9]{5}"
    pattern = unquote_promql(text)
    assert re.fullmatch(pattern, "api.v1-5d9c-abcde")
    assert not re.fullmatch(pattern, "apixv1-5d9c-abcde")


def test_matchers_operators_and_quoting() -> None:
    text = matcher_text(
        {
            "code": "=~5..",
            "route": "!=/health",
            "path": "!~/debug/.*",
            "name": 'say "hi"',
            "re": "=~\\d+",
            "eq": "==x",
        }
    )
    assert text == (
        'code=~"5..",eq="==x",name="say \\"hi\\"",path!~"/debug/.*",re=~"\\\\d+",route!="/health"'
    )
    assert matcher_text({}) == ""
