"""The Prometheus text-format parser behind the direct provider.

Hand-written cases for each rule of the format, round trips of Hypothesis-generated expositions
through a renderer written here (independent of the parser), and the sandbox's real exposition
(`controller.sandbox.exposition`, which the simulated zai-proxy pods serve).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.sandbox import exposition as sandbox
from controller.sandbox.faults import FaultProfiles, Latency
from controller.sandbox.zaiproxy import ProxyConfig, SimulatedZaiProxy
from controller.shell.providers.exposition import ExpositionError, parse, parse_float


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# -- rules, one case each -------------------------------------------------------------------


def test_help_type_labels_value_timestamp() -> None:
    text = (
        "# HELP http_requests_total The total number of HTTP requests.\n"
        "# TYPE http_requests_total counter\n"
        'http_requests_total{method="post",code="200"} 1027 1395066363000\n'
        'http_requests_total{method="post",code="400"}    3 1395066363000\n'
    )
    exp = parse(text)
    assert exp.types == {"http_requests_total": "counter"}
    assert exp.help == {"http_requests_total": "The total number of HTTP requests."}
    first, second = exp.samples
    assert first.name == "http_requests_total"
    assert first.labels == (("method", "post"), ("code", "200"))
    assert (first.value, first.timestamp_ms) == (1027.0, 1395066363000)
    assert (second.value, second.label_dict()) == (3.0, {"method": "post", "code": "400"})


def test_label_value_escapes() -> None:
    # On the wire: a\"b  c\\d  e\nf  and an unknown escape \t that Prometheus keeps as written.
    line = r'm{a="a\"b",b="c\\d",c="e\nf",d="g\th"} 1'
    (sample,) = parse(line + "\n").samples
    assert sample.label_dict() == {"a": 'a"b', "b": "c\\d", "c": "e\nf", "d": "g\\th"}


def test_label_value_may_contain_braces_commas_and_equals() -> None:
    (sample,) = parse('m{path="/x{1},y=2"} 5\n').samples
    assert sample.label_dict() == {"path": "/x{1},y=2"}


def test_help_escapes_and_missing_text() -> None:
    exp = parse("# HELP a one\\\\two\\nthree\n# HELP b\n")
    assert exp.help == {"a": "one\\two\nthree", "b": ""}


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("+Inf", math.inf),
        ("-Inf", -math.inf),
        ("Inf", math.inf),
        ("inf", math.inf),
        ("NaN", math.nan),
        ("nan", math.nan),
        ("1e3", 1000.0),
        ("-1.5E-3", -0.0015),
        (".5", 0.5),
        ("7.", 7.0),
        ("0", 0.0),
    ],
)
def test_values_as_go_parses_them(token: str, expected: float) -> None:
    assert same_float(parse_float(token), expected)
    (sample,) = parse(f"m {token}\n").samples
    assert same_float(sample.value, expected)


@pytest.mark.parametrize("token", ["1_000", "0x10", "one", "1.2.3", "", "--1"])
def test_values_go_rejects(token: str) -> None:
    with pytest.raises(ValueError):
        parse_float(token)


def test_blanks_tabs_trailing_comma_and_empty_label_block() -> None:
    text = 'm{ a = "1" , b="2", }\t3\t-5\nn{} 4\n  o 5\r\n'
    a, b, c = parse(text).samples
    assert a.labels == (("a", "1"), ("b", "2"))
    assert (a.value, a.timestamp_ms) == (3.0, -5)
    assert (b.name, b.labels, b.value) == ("n", (), 4.0)
    assert (c.name, c.value) == ("o", 5.0)


def test_comments_blank_lines_and_eof() -> None:
    text = "# a comment\n#nospace\n\n# TYPEX not meta\nm 1\n# EOF\nthis is not parsed {\n"
    exp = parse(text)
    assert [s.name for s in exp.samples] == ["m"]
    assert exp.types == {}


def test_counter_family_with_and_without_total() -> None:
    text = (
        "# TYPE plain_total counter\nplain_total 1\n"  # 0.0.4 style: the family carries _total
        "# TYPE om counter\nom_total 2\nom_created 1.7e9\n"  # OpenMetrics style
        "untyped_total 3\n"
    )
    exp = parse(text)
    assert exp.type_of("plain_total") == "counter"
    assert exp.type_of("om_total") == "counter"
    assert exp.family_of("om_created") == "om"
    assert exp.type_of("untyped_total") == "untyped"
    # Samples keep their exposed names: a query for `om_total` finds them, `om` does not.
    assert [s.name for s in exp.samples] == [
        "plain_total",
        "om_total",
        "om_created",
        "untyped_total",
    ]


def test_histogram_family() -> None:
    text = (
        "# TYPE d histogram\n"
        'd_bucket{le="0.1"} 1\nd_bucket{le="1"} 3\nd_bucket{le="+Inf"} 4\n'
        "d_sum 2.5\nd_count 4\n"
    )
    exp = parse(text)
    assert {exp.type_of(s.name) for s in exp.samples} == {"histogram"}
    assert [(s.label_dict().get("le"), s.value) for s in exp.samples[:3]] == [
        ("0.1", 1.0),
        ("1", 3.0),
        ("+Inf", 4.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('m{a="1" 2\n', "expected ',' or '}'"),
        ("m{a=1} 2\n", "invalid label"),
        ('m{a="1",a="2"} 3\n', "label a appears twice"),
        ("m\n", "missing value"),
        ("m{} \n", "missing value"),
        ("m abc\n", "invalid value"),
        ("m 1 2.5\n", "invalid timestamp"),
        ("m 1 2 3\n", "unexpected text"),
        ("m-x 1\n", "expected '{' or a blank"),
        ('{a="1"} 1\n', "expected a metric name"),
        ("# TYPE m counter\n# TYPE m gauge\n", "second TYPE"),
        ("# TYPE m countr\n", "invalid metric type 'countr'"),
        ("# TYPE 1m counter\n", "TYPE without a valid metric name"),
        ("# HELP\n", "HELP without a valid metric name"),
    ],
)
def test_syntax_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ExpositionError) as info:
        parse("ok 1\n" + text)
    line = 1 + text.count("\n")  # the last line of `text`, after the "ok 1" line
    assert str(info.value).startswith(f"line {line}: ")
    assert message in str(info.value)


# -- Hypothesis round trips through a renderer of our own -------------------------------------

METRIC_NAME = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,15}", fullmatch=True)
LABEL_NAME = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
LABEL_VALUE = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
HELP_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r"), max_size=20
).map(lambda s: s.strip(" \t"))
VALUE = st.floats(allow_nan=True, allow_infinity=True)
TIMESTAMP = st.none() | st.integers(-(2**63), 2**63 - 1)
BLANK = st.sampled_from([" ", "\t", "  ", " \t "])


@dataclass
class Family:
    name: str
    kind: str | None
    help: str | None
    samples: list[tuple[dict[str, str], float, int | None]]


@st.composite
def families(draw: st.DrawFn) -> list[Family]:
    names = draw(st.lists(METRIC_NAME, min_size=1, max_size=4, unique=True))
    out = []
    for name in names:
        kind = draw(st.none() | st.sampled_from(["counter", "gauge", "untyped", "summary"]))
        help_text = draw(st.none() | HELP_TEXT)
        samples = draw(
            st.lists(
                st.tuples(st.dictionaries(LABEL_NAME, LABEL_VALUE, max_size=3), VALUE, TIMESTAMP),
                max_size=4,
            )
        )
        out.append(Family(name, kind, help_text, samples))
    return out


def render_value(value: float, style: int) -> str:
    if math.isnan(value):
        return ["NaN", "nan", "NaN"][style % 3]
    if math.isinf(value):
        sign = "+" if value > 0 else "-"
        return [f"{sign}Inf", f"{sign}inf", f"{sign}Inf"][style % 3]
    return repr(value)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render(fams: list[Family], draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    lines = []
    for fam in fams:
        if fam.help is not None:
            lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        if fam.kind is not None:
            lines.append(f"# TYPE{draw(BLANK)}{fam.name}{draw(BLANK)}{fam.kind}")
        for labels, value, ts in fam.samples:
            block = ""
            if labels or draw(st.booleans()):
                pairs = [
                    f'{k}{draw(st.sampled_from(["=", " = "]))}"{escape_label(v)}"'
                    for k, v in labels.items()
                ]
                trailing = "," if labels and draw(st.booleans()) else ""
                block = "{" + ",".join(pairs) + trailing + "}"
            line = f"{fam.name}{block}{draw(BLANK)}{render_value(value, draw(st.integers(0, 2)))}"
            if ts is not None:
                line += f"{draw(BLANK)}{ts}"
            lines.append(line)
    end: str = draw(st.sampled_from(["\n", "", "\n\n"]))
    return "\n".join(lines) + end


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_round_trip_of_generated_expositions(data: st.DataObject) -> None:
    fams = data.draw(families())
    text = render(fams, data.draw)
    exp = parse(text)
    assert exp.types == {f.name: f.kind for f in fams if f.kind is not None}
    assert exp.help == {f.name: f.help for f in fams if f.help is not None}
    expected = [(f.name, labels, v, ts) for f in fams for labels, v, ts in f.samples]
    assert len(exp.samples) == len(expected)
    for got, (name, labels, value, ts) in zip(exp.samples, expected, strict=True):
        assert got.name == name
        assert got.labels == tuple(labels.items())
        assert same_float(got.value, value)
        assert got.timestamp_ms == ts


# -- the sandbox's real exposition -------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    counters=st.dictionaries(
        st.tuples(LABEL_VALUE, LABEL_VALUE),
        st.floats(min_value=0, max_value=1e12, allow_nan=False),
        max_size=4,
    ),
    gauges=st.dictionaries(st.tuples(LABEL_VALUE), VALUE, max_size=3),
    observations=st.lists(
        st.tuples(LABEL_VALUE, st.floats(min_value=0, max_value=100, allow_nan=False)),
        max_size=20,
    ),
)
def test_sandbox_families_parse_back(
    counters: dict[tuple[str, str], float],
    gauges: dict[tuple[str], float],
    observations: list[tuple[str, float]],
) -> None:
    counter = sandbox.Counter("c_total", "a counter \\ with\nnewline", ("a", "b"))
    for pair, amount in counters.items():
        counter.inc(pair, amount)
    gauge = sandbox.Gauge("g", "a gauge", ("x",))
    for single, value in gauges.items():
        gauge.set(single, value)
    histogram = sandbox.Histogram("h_seconds", "a histogram", ("v",), (0.1, 1, 10))
    for label, value in observations:
        histogram.observe((label,), value)

    exp = parse(sandbox.render([counter, gauge, histogram]))

    by_name: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for s in exp.samples:
        by_name.setdefault(s.name, {})[s.labels] = s.value
    for (a, b), value in counters.items():
        assert by_name["c_total"][(("a", a), ("b", b))] == value
    for (x,), value in gauges.items():
        assert same_float(by_name["g"][(("x", x),)], value)
    for values, series in histogram.series.items():
        (v,) = values
        assert by_name["h_seconds_count"][(("v", v),)] == series.count
        assert by_name["h_seconds_bucket"][(("v", v), ("le", "+Inf"))] == series.count
        buckets = [by_name["h_seconds_bucket"][(("v", v), ("le", le))] for le in ("0.1", "1", "10")]
        assert buckets == sorted(buckets)
    if counters:
        assert exp.type_of("c_total") == "counter"
        assert exp.help["c_total"] == "a counter \\ with\nnewline"
    if observations:
        assert exp.type_of("h_seconds_bucket") == "histogram"


def test_simulated_zai_proxy_metrics_parse() -> None:
    faults = FaultProfiles()
    faults.update("devpod", "zai-proxy", error_502=0.1, latency=Latency(0.05, 0.3))
    now = [0.0]
    proxy = SimulatedZaiProxy(
        ProxyConfig.from_env({"DEPLOYMENT_VARIANT": "production", "RATE_LIMIT_INITIAL": "1000"}),
        namespace="devpod",
        name="zai-proxy-abc-12345",
        deployment="zai-proxy",
        faults=faults,
        clock=lambda: now[0],
    )
    for _ in range(200):
        proxy.handle()
    now[0] += 60.0  # every request answered (and counted) by then
    text = proxy.render_metrics()
    exp = parse(text)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(exp.samples) == len(lines)
    assert exp.type_of("zai_proxy_requests_total") == "counter"
    assert exp.type_of("zai_proxy_request_duration_seconds_bucket") == "histogram"
    assert exp.type_of("zai_proxy_rate_limit_requests_per_second") == "gauge"
    total = sum(s.value for s in exp.samples if s.name == "zai_proxy_requests_total")
    assert total == 200
    assert {s.label_dict()["variant"] for s in exp.samples if "variant" in s.label_dict()} == {
        "production"
    }
