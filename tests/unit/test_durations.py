"""Duration strings <-> timedelta: what config authors write and what ptc prints back."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.durations import DURATION_PATTERN, format_duration, parse_duration

EXPECTED = "expected a duration string such as 30s, 5m, 1h30m or 24h"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("24h", timedelta(hours=24)),
        ("1d", timedelta(days=1)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("0.25s", timedelta(milliseconds=250)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        (" 2m ", timedelta(minutes=2)),
        # Exact, not float arithmetic: the millisecond survives next to a large unit.
        ("100000h0.001s", timedelta(hours=100000, milliseconds=1)),
        ("1h0.001s", timedelta(hours=1, milliseconds=1)),
    ],
)
def test_parse_examples(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(days=1), "24h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(milliseconds=1500), "1s500ms"),
        (timedelta(microseconds=499), "0s"),  # below the millisecond: rounds
        (timedelta(microseconds=1500), "2ms"),  # halves round up
        (timedelta(seconds=-2), "-2s"),  # for display (e.g. overdue); the parser refuses it
        # Long spans stay exact (total_seconds() would lose the carry into the second).
        (timedelta(days=999_999_999, microseconds=999_999), "23999999976h1s"),
    ],
)
def test_format_examples(delta: timedelta, expected: str) -> None:
    assert format_duration(delta) == expected


@given(st.integers(min_value=0, max_value=10**15))
def test_format_then_parse_round_trips_to_the_millisecond(ms: int) -> None:
    delta = timedelta(milliseconds=ms)
    text = format_duration(delta)
    assert parse_duration(text) == delta
    assert re.fullmatch(DURATION_PATTERN, text), text


_UNIT_US = {"ms": 1_000, "s": 10**6, "m": 60 * 10**6, "h": 3600 * 10**6, "d": 86400 * 10**6}


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(_UNIT_US))), min_size=1, max_size=5
    )
)
def test_parse_sums_the_parts_exactly(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    expected = timedelta(microseconds=sum(n * _UNIT_US[u] for n, u in parts))
    assert parse_duration(text) == expected
    # Printing it back gives the canonical form of the same duration.
    assert parse_duration(format_duration(expected)) == expected


@given(st.text(alphabet="0123456789.msdh -", max_size=8))
def test_schema_pattern_and_parser_agree(text: str) -> None:
    """What config/schema.json accepts is exactly what the loader accepts (no whitespace)."""
    if text != text.strip():
        return
    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert parsed == bool(re.fullmatch(DURATION_PATTERN, text)), text


@pytest.mark.parametrize(
    "text", ["", "5", "5 m", "1h 30m", "-5s", "5M", ".5s", "5.s", "1e5s", "5mins", "abc", "00"]
)
def test_rejects_garbage_saying_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == f"{EXPECTED}, got {text!r}"


@pytest.mark.parametrize(
    ("value", "shown"), [(30, "int 30"), (1.5, "float 1.5"), (None, "NoneType None")]
)
def test_rejects_non_strings_naming_the_type(value: object, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert str(info.value) == f"{EXPECTED}, got {shown}"


def test_too_long_is_a_value_error_not_an_overflow() -> None:
    with pytest.raises(
        ValueError, match=r"^duration '99999999999d' is too long \(at most 999999999d\)$"
    ):
        parse_duration("99999999999d")
