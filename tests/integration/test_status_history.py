"""`ptc status` from the cluster: the history ConfigMap's full record, the annotation as fallback.

Against the sandbox API server: a ConfigMap that is complete, stale, missing, forbidden or
hostile (garbage, nested a megabyte deep, eight thousand records, a version from the future).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.core.state import (
    HISTORY_LIMIT,
    STATE_ANNOTATION,
    DecisionRecord,
    MetricRecord,
    Phase,
    RolloutState,
    encode_state,
)
from controller.ops.status_source import ClusterStatus
from controller.sandbox.apiaccess import Rule
from controller.sandbox.apiserver import ApiServer
from controller.shell import history
from controller.shell.kube import PERMISSIONS, Kube
from tests.integration.conftest import FAST, eventually
from tests.sandbox.conftest import service
from tests.unit.states import state as make_state

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NS = "default"
TARGET = "t-web"


def records(count: int, metrics: int = 3, by: str = "ptc") -> tuple[DecisionRecord, ...]:
    return tuple(
        DecisionRecord(
            T0 + timedelta(seconds=10 * i),
            "holding",
            i // 10,
            "hold",
            f"decision {i}",
            tuple(
                MetricRecord(f"m{j}", "pass", 0.01 * i, 0.02, "<= 0.5", "ok")
                for j in range(metrics)
            ),
            by,
        )
        for i in range(count)
    )


def state_with(history_records: tuple[DecisionRecord, ...]) -> RolloutState:
    return make_state(
        Phase.HOLDING,
        TARGET,
        rollout="web",
        stable="web",
        canary="web-v2",
        steps=3,
        step=1,
        history=history_records,
    )


def configmap(data: dict[str, str], name: str = "ptc-history-web") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": data,
    }


def recorded(rs: tuple[DecisionRecord, ...], target: str = TARGET) -> dict[str, str]:
    return {"target": target, "version": "1", "history": history.encode(rs)}


def annotate(api: ApiServer, full: tuple[DecisionRecord, ...]) -> None:
    """The Service as the controller leaves it: the state holds the last few records."""
    svc = service("web", {"app": "web"})
    svc["metadata"]["annotations"] = {STATE_ANNOTATION: encode_state(state_with(full))}
    api.create(svc)


@pytest.fixture
async def cluster(kubeconfig: Path) -> AsyncIterator[ClusterStatus]:
    kube = await Kube.connect(str(kubeconfig), policy=FAST)
    status = ClusterStatus(kube, NS)
    try:
        await status.start(timeout=5)
        yield status
    finally:
        await kube.close()


async def only_doc(status: ClusterStatus) -> dict[str, Any]:
    docs = await status.documents(now=T0)
    assert len(docs) == 1
    return docs[0]


def reasons(doc: dict[str, Any]) -> list[str]:
    return [d["reason"] for d in doc["decisions"]]


async def test_status_shows_every_recorded_decision_with_its_readings(
    api_server: ApiServer, cluster: ClusterStatus
) -> None:
    full = records(40, metrics=3)
    api_server.create(configmap(recorded(full)))
    annotate(api_server, full)
    await _until_seen(cluster)
    doc = await only_doc(cluster)
    assert reasons(doc) == [f"decision {i}" for i in range(40)]
    # readings on every record, not only on the newest (the annotation keeps those alone)
    assert all(len(d["metrics"]) == 3 for d in doc["decisions"])
    assert doc["history"] == {"source": "configmap", "problem": None}


async def test_a_stale_configmap_is_completed_from_the_annotation_without_duplicates(
    api_server: ApiServer, cluster: ClusterStatus
) -> None:
    full = records(30)
    # The last 4 decisions reached the state but not yet (or never: a killed leader) the
    # ConfigMap; the annotation repeats 6 that the ConfigMap has too.
    api_server.create(configmap(recorded(full[:-4])))
    annotate(api_server, full)
    await _until_seen(cluster)
    doc = await only_doc(cluster)
    assert reasons(doc) == [f"decision {i}" for i in range(30)]
    assert all(d["metrics"] for d in doc["decisions"][:26])


async def test_without_a_configmap_the_annotations_decisions_are_shown(
    api_server: ApiServer, cluster: ClusterStatus
) -> None:
    full = records(25)
    annotate(api_server, full)
    await _until_seen(cluster)
    doc = await only_doc(cluster)
    assert reasons(doc) == [f"decision {i}" for i in range(25 - HISTORY_LIMIT, 25)]
    assert doc["history"] == {"source": "annotation", "problem": None}


async def test_another_rollouts_configmap_is_not_this_ones_history(
    api_server: ApiServer, cluster: ClusterStatus
) -> None:
    api_server.create(configmap(recorded(records(40), target="an-earlier-rollout")))
    annotate(api_server, records(25))
    await _until_seen(cluster)
    doc = await only_doc(cluster)
    assert len(doc["decisions"]) == HISTORY_LIMIT


DEEP = "[" * 900_000  # under the 1 MiB a ConfigMap may hold


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"target": TARGET, "history": "{not json"}, "history is not JSON"),
        ({"target": TARGET, "history": '{"a": 1}'}, "not a JSON list"),
        ({"target": TARGET, "history": DEEP}, "history is not"),
        ({"target": TARGET, "history": '[{"at": 5}]'}, "history[0]"),
        ({"target": TARGET, "version": "2", "history": "[]"}, "newer ptc (version 2"),
        ({"target": TARGET, "version": "two", "history": "[]"}, "no valid 'version'"),
        ({"target": TARGET, "version": "9" * 5000, "history": "[]"}, "no valid 'version'"),
    ],
    ids=["garbage", "object", "deep", "bad-record", "newer", "not-a-number", "huge-number"],
)
async def test_a_hostile_configmap_falls_back_to_the_annotation_and_says_why(
    api_server: ApiServer, cluster: ClusterStatus, data: dict[str, str], problem: str
) -> None:
    full = records(25)
    api_server.create(configmap(data))
    annotate(api_server, full)
    await _until_seen(cluster)
    doc = await only_doc(cluster)
    assert reasons(doc) == [f"decision {i}" for i in range(25 - HISTORY_LIMIT, 25)]
    assert doc["history"]["source"] == "annotation"
    assert problem in doc["history"]["problem"]
    assert "ptc-history-web" in doc["history"]["problem"]


async def test_eight_thousand_records_are_cut_to_the_newest_the_history_keeps(
    api_server: ApiServer, cluster: ClusterStatus
) -> None:
    many = records(8_000, metrics=0)
    text = json.dumps([history.record_json(r) for r in many], separators=(",", ":"))
    assert len(text) < 1024 * 1024
    api_server.create(configmap({"target": TARGET, "history": text}))
    annotate(api_server, many)
    await _until_seen(cluster)
    doc = await only_doc(cluster)
    assert reasons(doc) == [f"decision {i}" for i in range(8_000 - history.LIMIT, 8_000)]


async def test_a_forbidden_configmap_falls_back_to_the_annotation(
    api_server: ApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    """A person allowed to read Services and Deployments but not ConfigMaps still sees status."""
    full = records(25)
    api_server.create(configmap(recorded(full)))
    annotate(api_server, full)
    rules = [
        Rule((p.api_group,), (p.resource,), p.verbs)
        for p in PERMISSIONS
        if p.resource != "configmaps"
    ]
    api_server.add_token("reader", "alice", rules)
    kube = await Kube.connect(
        str(api_server.write_kubeconfig(tmp_path / "kc", "reader")), policy=FAST
    )
    status = ClusterStatus(kube, NS)
    try:
        await status.start(timeout=5)
        doc = await only_doc(status)
    finally:
        await kube.close()
    assert reasons(doc) == [f"decision {i}" for i in range(25 - HISTORY_LIMIT, 25)]
    assert "forbidden" in doc["history"]["problem"].lower()


async def test_the_configmap_is_read_again_only_when_it_may_have_changed(
    api_server: ApiServer, cluster: ClusterStatus
) -> None:
    full = records(30)
    api_server.create(configmap(recorded(full)))
    annotate(api_server, full)
    await _until_seen(cluster)
    await cluster.documents(now=T0)
    await cluster.documents(now=T0)
    assert cluster.history_reads == 1  # nothing changed: the watch-driven refresh reads nothing
    # A new decision in the state: the ConfigMap (written after it) may lag; read again.
    more = records(31)
    before = frozenset(s.resource_version for s in cluster.services.items())
    api_server.patch(
        "services",
        "web",
        {"metadata": {"annotations": {STATE_ANNOTATION: encode_state(state_with(more))}}},
    )
    await _until_seen(cluster, before)
    doc = await only_doc(cluster)
    assert cluster.history_reads == 2
    assert reasons(doc)[-1] == "decision 30"
    # Still lagging: read again (no sooner than lag_retry), until the ConfigMap has it.
    cluster.lag_retry = 0.0
    await cluster.documents(now=T0)
    assert cluster.history_reads == 3
    name = history.configmap_name("web")
    _, version = await cluster.kube.get_configmap(NS, name)
    await cluster.kube.write_configmap(NS, name, recorded(more), resource_version=version)
    await cluster.documents(now=T0)
    await cluster.documents(now=T0)
    assert cluster.history_reads == 4  # caught up: no more reads
    assert all(d["metrics"] for d in (await only_doc(cluster))["decisions"])


async def _until_seen(status: ClusterStatus, other_than: frozenset[str] = frozenset()) -> None:
    """Wait until the Service informer has the Service, in a version not in `other_than`."""

    def seen() -> bool:
        items = status.services.items()
        return bool(items) and all(s.resource_version not in other_than for s in items)

    await eventually(seen, limit=10.0)
