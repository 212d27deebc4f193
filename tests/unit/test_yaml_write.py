"""`ptc status -o yaml`'s writer: what it writes reads back as the same data.

Read back twice: by the config reader (YAML 1.2, as kubectl and Go read it) and by PyYAML's
safe loader (YAML 1.1), so a string never turns into a number, bool or null on either side.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.config.yamlread import read_yaml
from controller.core.config.yamlwrite import dump_yaml

# Strings that look like something else in one YAML version or the other.
TRICKY = st.sampled_from(
    ["yes", "on", "off", "no", "y", "010", "0o17", "0x1F", "1e3", "+1", "-.5", "7.", ".inf",
     ".NaN", "~", "null", "", "true", "2026-12-02T06:00:00Z", "1_000", "a: b", "- x", "#c",
     "  padded  ", "line\nbreak", "tab\there", "é ☃", "'q'", '"dq"', "*alias", "&anchor", "!tag"]
)  # fmt: skip
KEYS = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=8) | TRICKY
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=20)
    | TRICKY
)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(DATA)
def test_round_trip_through_both_yaml_versions(data: Any) -> None:
    text = dump_yaml(data)
    assert read_yaml(text).data == data
    assert yaml.safe_load(text) == data


def test_block_style_keys_in_given_order_and_readable_text() -> None:
    doc = {"name": "zai-proxy", "phase": "Progressing", "step": {"index": 2, "of": 5}}
    doc["analysis"] = [{"metric": "errors", "verdict": "pass", "value": 0.01}]
    assert dump_yaml(doc) == (
        "name: zai-proxy\n"
        "phase: Progressing\n"
        "step:\n"
        "  index: 2\n"
        "  of: 5\n"
        "analysis:\n"
        "- metric: errors\n"
        "  verdict: pass\n"
        "  value: 0.01\n"
    )


def test_strings_a_yaml_12_reader_would_take_for_numbers_are_quoted() -> None:
    # PyYAML (1.1) alone would write these bare; kubectl would then read 15 and 1000.0.
    assert dump_yaml({"a": "0o17", "b": "1e3"}) == "a: '0o17'\nb: '1e3'\n"


def test_special_floats() -> None:
    back = read_yaml(dump_yaml({"inf": math.inf, "nan": math.nan})).data
    assert back["inf"] == math.inf
    assert math.isnan(back["nan"])
