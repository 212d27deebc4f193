"""Secondary indexes stay equal to a brute-force scan under any sequence of changes."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.shell.kube.indexes import Indexes

Labels = frozenset[tuple[str, str]]
NAMES = st.sampled_from(["a", "b", "c", "d", "e"])
LABELS = st.frozensets(
    st.tuples(st.sampled_from(["app", "version"]), st.sampled_from(["x", "y"])), max_size=2
)
# (name, new labels or None for a delete); a "relist" replaces everything at once
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), NAMES, st.one_of(st.none(), LABELS)),
        st.tuples(st.just("relist"), st.dictionaries(NAMES, LABELS), st.none()),
    ),
    max_size=30,
)


def keys(labels: Labels) -> Iterable[str]:
    return (f"{k}={v}" for k, v in labels)


def first_key(labels: Labels) -> Iterable[str]:
    return sorted(keys(labels))[:1]


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_indexes_match_a_scan_after_any_changes(ops: list[tuple[str, object, object]]) -> None:
    items: dict[str, Labels] = {}
    indexes: Indexes[Labels] = Indexes()
    indexes.add("label", keys, items)
    indexes.add("first", first_key, items)
    for op, a, b in ops:
        if op == "put":
            name, new = str(a), b
            old = items.get(name)
            if new is None:
                items.pop(name, None)
            else:
                assert isinstance(new, frozenset)
                items[name] = new
            indexes.put(name, old, new if isinstance(new, frozenset) else None)
        else:
            assert isinstance(a, dict)
            items = dict(a)
            indexes.rebuild(items)
        for index, fn in (("label", keys), ("first", first_key)):
            every_key = {k for labels in items.values() for k in fn(labels)}
            for key in every_key | {"app=x", "version=y"}:
                want = {n for n, labels in items.items() if key in set(fn(labels))}
                assert indexes.names(index, key) == want
