"""Label and field selectors: parsing, matching and rendering, by example and by property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.sandbox.selectors import (
    LabelSelector,
    Requirement,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector,
    selector_from_map,
    selector_to_string,
)

LABELS = {"app": "web", "version": "v2", "tier": "frontend", "replicas": "3"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),  # != matches objects without the key
        ("app=web,version=v2", True),
        ("app=web,version=v1", False),
        ("version in (v1,v2)", True),
        ("version in (v1, v3)", False),
        ("version notin (v1,v3)", True),
        ("missing notin (a)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("replicas>2", True),
        ("replicas<3", False),
        ("  app = web , version in ( v2 )  ", True),
        ("example.com/team=", False),
    ],
)
def test_matching(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "bad",
    [
        "app in (a",
        "app in a",
        "=web",
        "app=web,",
        "app===web",
        "app in (a b)",
        "-bad=1",
        "app=" + "x" * 64,
        "a/b/c=1",
        "app=web)",
        "replicas>x",
    ],
)
def test_rejects_what_the_server_rejects(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(bad)


def test_empty_value_and_prefixed_keys() -> None:
    sel = parse_label_selector("example.com/team=,app.kubernetes.io/name in (web,)")
    assert sel.matches({"example.com/team": "", "app.kubernetes.io/name": ""})
    assert not sel.matches({"example.com/team": "a", "app.kubernetes.io/name": "web"})


def test_label_selector_objects() -> None:
    sel = selector_from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "version", "operator": "In", "values": ["v2", "v3"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "canary": "true"})
    assert selector_to_string({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"
    assert selector_from_label_selector({}).empty()
    with pytest.raises(SelectorError):
        selector_from_label_selector(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}
        )
    with pytest.raises(SelectorError):
        selector_from_label_selector({"matchExpressions": [{"key": "a", "operator": "Gt"}]})


def test_map_selector() -> None:
    assert selector_from_map({"app": "web"}).matches(LABELS)
    assert selector_from_map({}).matches({})


def test_field_selectors() -> None:
    fields = {"metadata.name": "web", "metadata.namespace": "default", "status.phase": "Running"}
    assert parse_field_selector("metadata.name=web,").matches(fields)  # kr8s sends a trailing comma
    assert parse_field_selector("metadata.name==web,status.phase!=Pending").matches(fields)
    assert not parse_field_selector("metadata.namespace=other").matches(fields)
    assert parse_field_selector("").matches(fields)
    with pytest.raises(SelectorError, match=r"field label not supported: spec\.bogus"):
        parse_field_selector("spec.bogus=1", supported={"metadata.name"})
    with pytest.raises(SelectorError):
        parse_field_selector("metadata.name in (a)")


# --- properties -----------------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True).filter(
    lambda n: n not in ("in", "notin")
)
values = st.from_regex(r"[a-z0-9]{1,5}", fullmatch=True)
label_sets = st.dictionaries(
    st.sampled_from(["app", "version", "tier", "zone"]), values, max_size=4
)


@st.composite
def requirements(draw: st.DrawFn) -> Requirement:
    key = draw(st.sampled_from(["app", "version", "tier", "zone"]) | names)
    op = draw(st.sampled_from(["=", "!=", "in", "notin", "exists", "!"]))
    if op in ("=", "!="):
        return Requirement(key, op, (draw(values),))
    if op in ("in", "notin"):
        vals = draw(st.lists(values, min_size=1, max_size=3, unique=True))
        return Requirement(key, op, tuple(sorted(vals)))
    return Requirement(key, op)


def reference_match(req: Requirement, labels: dict[str, str]) -> bool:
    """The documented meaning of each operator, written independently of the implementation."""
    has = req.key in labels
    value = labels.get(req.key)
    if req.op in ("=", "in"):
        return has and value in req.values
    if req.op in ("!=", "notin"):
        return value not in req.values
    return has if req.op == "exists" else not has


@given(st.lists(requirements(), max_size=4), label_sets)
def test_render_parse_round_trip_preserves_meaning(
    reqs: list[Requirement], labels: dict[str, str]
) -> None:
    text = str(LabelSelector(tuple(reqs)))
    parsed = parse_label_selector(text)
    assert parsed.matches(labels) == all(reference_match(r, labels) for r in reqs)
    assert str(parse_label_selector(str(parsed))) == str(parsed)


@given(st.dictionaries(st.sampled_from(["app", "version", "tier"]), values, max_size=3), label_sets)
def test_map_selector_is_subset_check(selector: dict[str, str], labels: dict[str, str]) -> None:
    assert selector_from_map(selector).matches(labels) == (selector.items() <= labels.items())
