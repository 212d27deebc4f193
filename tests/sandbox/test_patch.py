"""Merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.sandbox.kinds import DEPLOYMENTS, PODS, SERVICES
from controller.sandbox.patch import (
    PatchApplyError,
    PatchFormatError,
    json_equal,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

DOC: dict[str, Any] = {
    "metadata": {"name": "web", "labels": {"app": "web", "version": "v1"}, "finalizers": ["a"]},
    "spec": {"selector": {"app": "web", "version": "v1"}, "ports": [{"port": 80, "name": "http"}]},
}


# --- RFC 7386 ---------------------------------------------------------------------------------


def test_merge_patch_rfc7386_examples() -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "c"}, {"a": ["b"]}) == {"a": ["b"]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch([1, 2], {"a": "b", "c": None}) == {"a": "b"}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_merge_patch_does_not_mutate_inputs() -> None:
    doc, patch = copy.deepcopy(DOC), {"spec": {"selector": {"version": None}}}
    merge_patch(doc, patch)
    assert doc == DOC and patch == {"spec": {"selector": {"version": None}}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values, json_values)
def test_merge_patch_is_idempotent(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert json_equal(merge_patch(once, patch), once)


# --- RFC 6902 ---------------------------------------------------------------------------------


def test_json_patch_all_operations() -> None:
    ops = [
        {"op": "test", "path": "/spec/selector/version", "value": "v1"},
        {"op": "remove", "path": "/spec/selector/version"},
        {"op": "add", "path": "/metadata/labels/tier", "value": "fe"},
        {"op": "replace", "path": "/metadata/name", "value": "web2"},
        {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/annotations"},
        {"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/tier"},
        {"op": "add", "path": "/spec/ports/-", "value": {"port": 81}},
        {"op": "add", "path": "/spec/ports/0", "value": {"port": 79}},
        {"op": "add", "path": "/metadata/a~1b", "value": "slash"},
    ]
    out = json_patch(DOC, ops)
    assert out["spec"]["selector"] == {"app": "web"}
    assert out["metadata"]["name"] == "web2"
    assert out["metadata"]["annotations"] == "web"
    assert out["metadata"]["tier"] == "fe" and "tier" not in out["metadata"]["labels"]
    assert [p["port"] for p in out["spec"]["ports"]] == [79, 80, 81]
    assert out["metadata"]["a/b"] == "slash"
    assert DOC["spec"]["selector"]["version"] == "v1"  # input untouched


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/spec/selector/version", "value": "v2"}],
        [{"op": "test", "path": "/spec/ports/0/port", "value": True}],  # true is not 1... nor 80
        [{"op": "remove", "path": "/spec/selector/missing"}],
        [{"op": "replace", "path": "/spec/missing", "value": 1}],
        [{"op": "add", "path": "/nope/deeper", "value": 1}],
        [{"op": "add", "path": "/spec/ports/5", "value": 1}],
        [{"op": "move", "from": "/spec", "path": "/spec/inner"}],
        [{"op": "frobnicate", "path": "/spec"}],
        [{"op": "add", "path": "/spec/x"}],
        [{"op": "add", "path": "spec", "value": 1}],
    ],
)
def test_json_patch_failures_do_not_apply(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(PatchApplyError):
        json_patch(DOC, ops)


def test_json_patch_test_distinguishes_booleans_from_numbers() -> None:
    doc = {"a": 1, "b": True}
    json_patch(
        doc,
        [{"op": "test", "path": "/a", "value": 1.0}, {"op": "test", "path": "/b", "value": True}],
    )
    with pytest.raises(PatchApplyError):
        json_patch(doc, [{"op": "test", "path": "/a", "value": True}])


def test_json_patch_must_be_a_list_of_objects() -> None:
    with pytest.raises(PatchFormatError):
        json_patch(DOC, {"op": "add"})
    with pytest.raises(PatchFormatError):
        json_patch(DOC, ["add"])


@given(
    st.dictionaries(st.text(min_size=1, max_size=4), json_values, max_size=4),
    st.text(min_size=1, max_size=4),
    json_values,
)
def test_json_patch_add_then_remove_restores(doc: dict[str, Any], key: str, value: Any) -> None:
    pointer = "/" + key.replace("~", "~0").replace("/", "~1")
    if key in doc:
        return
    added = json_patch(doc, [{"op": "add", "path": pointer, "value": value}])
    assert json_equal(json_patch(added, [{"op": "test", "path": pointer, "value": value}]), added)
    assert json_equal(json_patch(added, [{"op": "remove", "path": pointer}]), doc)


# --- strategic merge patch ------------------------------------------------------------------------

POD_SPEC = {
    "spec": {
        "containers": [
            {
                "name": "proxy",
                "image": "p:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 8080, "name": "http"}],
            },
            {"name": "sidecar", "image": "s:1"},
        ],
        "tolerations": [{"key": "x"}],
    }
}


def test_smp_merges_containers_env_and_ports_by_key() -> None:
    patch = {
        "spec": {
            "containers": [
                {
                    "name": "proxy",
                    "image": "p:2",
                    "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                    "ports": [{"containerPort": 9090}],
                },
            ]
        }
    }
    out = strategic_merge_patch(POD_SPEC, patch, PODS.smp_schema)
    proxy, sidecar = out["spec"]["containers"]
    assert proxy["image"] == "p:2"
    assert proxy["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert [p["containerPort"] for p in proxy["ports"]] == [8080, 9090]
    assert sidecar == {"name": "sidecar", "image": "s:1"}


def test_smp_directives() -> None:
    schema = PODS.smp_schema
    out = strategic_merge_patch(
        POD_SPEC, {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}, schema
    )
    assert [c["name"] for c in out["spec"]["containers"]] == ["proxy"]
    out = strategic_merge_patch(
        POD_SPEC,
        {"spec": {"containers": [{"name": "only", "image": "o:1"}, {"$patch": "replace"}]}},
        schema,
    )
    assert out["spec"]["containers"] == [{"name": "only", "image": "o:1"}]
    out = strategic_merge_patch(POD_SPEC, {"spec": {"$patch": "replace", "containers": []}}, schema)
    assert out["spec"] == {"containers": []}
    out = strategic_merge_patch(POD_SPEC, {"spec": {"tolerations": [{"key": "y"}]}}, schema)
    assert out["spec"]["tolerations"] == [{"key": "y"}]  # no merge key: replaced
    out = strategic_merge_patch(POD_SPEC, {"spec": {"tolerations": None}}, schema)
    assert "tolerations" not in out["spec"]
    out = strategic_merge_patch(
        POD_SPEC,
        {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "proxy"}]}},
        schema,
    )
    assert [c["name"] for c in out["spec"]["containers"]] == ["sidecar", "proxy"]
    with pytest.raises(PatchFormatError):
        strategic_merge_patch(POD_SPEC, {"spec": {"containers": [{"image": "no-name"}]}}, schema)


def test_smp_maps_merge_and_primitive_lists_union() -> None:
    schema = SERVICES.smp_schema
    out = strategic_merge_patch(
        DOC,
        {"metadata": {"labels": {"tier": "fe", "version": None}, "finalizers": ["b", "a"]}},
        schema,
    )
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    assert out["metadata"]["finalizers"] == ["a", "b"]
    out = strategic_merge_patch(
        out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, schema
    )
    assert out["metadata"]["finalizers"] == ["b"]
    out = strategic_merge_patch(
        DOC, {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}, schema
    )
    assert out["spec"]["ports"] == [{"port": 80, "name": "http", "targetPort": 8080}]


def test_smp_deployment_schema_reaches_the_pod_template() -> None:
    dep = {"spec": {"template": POD_SPEC}}
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "proxy", "env": [{"name": "A", "$patch": "delete"}]}]
                }
            }
        }
    }
    out = strategic_merge_patch(dep, patch, DEPLOYMENTS.smp_schema)
    assert out["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}]


@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]), st.integers() | st.text(max_size=2), max_size=3
    ),
    st.dictionaries(st.sampled_from(["a", "b", "d"]), st.none() | st.integers(), max_size=3),
)
def test_smp_on_plain_maps_equals_merge_patch(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    assert strategic_merge_patch(doc, patch, {}) == merge_patch(doc, patch)
