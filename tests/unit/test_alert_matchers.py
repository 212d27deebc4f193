"""Alertmanager label matchers: syntax, Prometheus semantics (anchored regexes, absent = "")."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.alerts.matchers import MatcherError, Op, parse_matcher, quote

LABELS = {"alertname": "ZaiProxyCanaryBadGateway", "namespace": "devpod", "version": "v2"}

# (matcher, matches LABELS?) — one sentence of intent per row.
CASES = [
    ('alertname="ZaiProxyCanaryBadGateway"', True),  # equality
    ("alertname=ZaiProxyCanaryBadGateway", True),  # bare values, as Alertmanager accepts
    ('alertname="ZaiProxy"', False),  # equality is exact
    ('alertname=~"ZaiProxy.*"', True),  # regex
    ('alertname=~"ZaiProxy"', False),  # regexes are anchored: no prefix match
    ('alertname=~"Canary"', False),  # ... nor a substring match
    ('alertname=~"zaiproxy.*"', False),  # case-sensitive
    ('alertname=~"(?i)zaiproxy.*"', True),  # unless asked
    ('alertname=~"Other|ZaiProxy.*"', True),  # alternation anchors as a whole
    ('namespace!="prod"', True),
    ('namespace!="devpod"', False),
    ('version!~"v1|v3"', True),
    ('version!~"v.*"', False),
    ('severity=""', True),  # an absent label has the value ""
    ('severity!="page"', True),  # so a negative matcher on it holds
    ('severity=~".*"', True),
    ('severity=~".+"', False),  # requiring a value fails when the label is absent
    ('  namespace  =  "devpod"  ', True),  # whitespace around the parts
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_matching(text: str, expected: bool) -> None:
    assert parse_matcher(text).matches(LABELS) is expected


def test_parsed_parts_and_escapes() -> None:
    m = parse_matcher('pod=~"zai\\\\.proxy-v2-\\d+"')
    assert (m.name, m.op, m.value) == ("pod", Op.RE, "zai\\.proxy-v2-\\d+")
    assert m.matches({"pod": "zai.proxy-v2-12"}) and not m.matches({"pod": "zaiXproxy-v2-12"})
    assert parse_matcher('msg="say \\"hi\\"\\n"').value == 'say "hi"\n'
    assert parse_matcher("name=").value == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alertname", "expected NAME OP"),
        ('="x"', "expected NAME OP"),
        ('1abc="x"', "expected NAME OP"),
        ('alertname=="x"', 'unescaped "'),
        ('alertname~="x"', "expected NAME OP"),
        ('alertname=~"(unclosed"', "bad regex"),
        ('alertname="a"b"', 'unescaped "'),
    ],
)
def test_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(MatcherError, match=re.escape(message)):
        parse_matcher(text)


@given(st.text(max_size=40))
def test_quoted_values_read_back_unchanged(value: str) -> None:
    m = parse_matcher(f"label={quote(value)}")
    assert m.value == value and m.matches({"label": value})
    assert str(m) == f"label={quote(value)}"


@given(st.text(max_size=20), st.text(max_size=20))
def test_equality_and_escaped_regex_agree(value: str, other: str) -> None:
    eq = parse_matcher(f"l={quote(value)}")
    rx = parse_matcher(f"l=~{quote(re.escape(value))}")
    ne = parse_matcher(f"l!={quote(value)}")
    for candidate in (value, other, value + "x", "x" + value):
        labels = {"l": candidate}
        assert eq.matches(labels) == rx.matches(labels) == (candidate == value)
        assert ne.matches(labels) is not eq.matches(labels)
