"""The decision history ConfigMap: bounded, merged, written best-effort, read per target."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.core.state import (
    DecisionRecord,
    MetricRecord,
    Phase,
    StateError,
    compact,
)
from controller.shell import history
from controller.shell.kube import Conflict, NotFound, Unavailable
from tests.unit.states import state as make_state

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NAME = history.configmap_name("zai-proxy")


def record(i: int, metrics: int = 0, reason: str = "") -> DecisionRecord:
    readings = tuple(
        MetricRecord(f"m{j}", "pass", 0.01, 0.02, "<= 0.05", "ok") for j in range(metrics)
    )
    return DecisionRecord(
        T0 + timedelta(seconds=i), "holding", 0, f"d{i}", reason or f"r{i}", readings
    )


class ConfigMaps:
    """ConfigMaps in memory with resourceVersions; `fail` makes the next calls raise it."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[dict[str, str], str]] = {}
        self.version = 0
        self.fail: list[Exception] = []
        self.writes = 0

    async def get_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        if self.fail:
            raise self.fail.pop(0)
        if name not in self.objects:
            raise NotFound(f"configmaps {name} not found", status=404, reason="NotFound")
        data, version = self.objects[name]
        return dict(data), version

    async def write_configmap(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        *,
        resource_version: str | None,
        labels: dict[str, str] | None = None,
    ) -> str:
        if self.fail:
            raise self.fail.pop(0)
        current = self.objects.get(name)
        if (current is None) != (resource_version is None) or (
            current is not None and current[1] != resource_version
        ):
            raise Conflict("changed", status=409, reason="Conflict")
        assert sum(len(k) + len(v.encode()) for k, v in data.items()) < 1024 * 1024
        self.version += 1
        self.objects[name] = (dict(data), str(self.version))
        self.writes += 1
        return str(self.version)


def test_merge_keeps_the_fuller_copy_and_orders_by_time() -> None:
    full = record(1, metrics=2)
    stripped = DecisionRecord(full.at, full.phase, full.step, full.decision, full.reason)
    merged = history.merge([record(2), full], [stripped, record(3), record(0)])
    assert [r.decision for r in merged] == ["d0", "d1", "d2", "d3"]
    assert merged[1].metrics == full.metrics


def test_encoding_is_bounded_in_records_and_bytes() -> None:
    many = [record(i) for i in range(history.LIMIT + 50)]
    assert [r.decision for r in history.decode(history.encode(many))] == [
        f"d{i}" for i in range(50, history.LIMIT + 50)
    ]
    huge = [record(i, metrics=100, reason="x" * 180) for i in range(history.LIMIT)]
    text = history.encode(huge)
    assert len(text.encode()) <= history.BYTES
    kept = history.decode(text)
    assert kept and kept[-1] == history.decode(history.encode(huge[-1:]))[0]  # the newest kept


async def test_the_writer_appends_and_a_new_target_starts_afresh() -> None:
    kube = ConfigMaps()
    writer = history.HistoryWriter(kube, "ns", "zai-proxy")
    writer.add("a", [record(0), record(1, metrics=3)])
    await writer.flush()
    writer.add("a", [record(2)])
    await writer.flush()
    got = await history.read(kube, "ns", "zai-proxy", "a")
    assert [r.decision for r in got] == ["d0", "d1", "d2"] and len(got[1].metrics) == 3
    assert await history.read(kube, "ns", "zai-proxy", "b") == ()
    writer.add("b", [record(9)])
    await writer.flush()
    assert [r.decision for r in await history.read(kube, "ns", "zai-proxy", "b")] == ["d9"]
    assert json.loads(kube.objects[NAME][0]["history"])[0]["decision"] == "d9"


async def test_a_failing_api_server_costs_the_history_not_the_rollout() -> None:
    kube = ConfigMaps()
    writer = history.HistoryWriter(kube, "ns", "zai-proxy")
    kube.fail = [Unavailable("down", status=503, reason="ServiceUnavailable")]
    writer.add("a", [record(0)])  # returns at once, whatever the API server does
    await writer.flush()
    assert writer.failures == 1 and kube.writes == 0
    # A conflicting writer (an old leader) is merged with, not overwritten.
    kube.objects[NAME] = ({"target": "a", "history": history.encode([record(5)])}, "77")
    kube.fail = [Conflict("changed", status=409, reason="Conflict")]
    writer.add("a", [record(6)])
    await writer.flush()
    got = await history.read(kube, "ns", "zai-proxy", "a")
    assert [r.decision for r in got] == ["d5", "d6"]


async def test_a_broken_configmap_is_replaced_and_reading_it_names_the_problem() -> None:
    kube = ConfigMaps()
    kube.objects[NAME] = ({"target": "a", "history": "{not json"}, "1")
    with pytest.raises(ValueError, match="history is not JSON"):
        await history.read(kube, "ns", "zai-proxy", "a")
    writer = history.HistoryWriter(kube, "ns", "zai-proxy")
    writer.add("a", [record(0)])
    await writer.flush()
    assert [r.decision for r in await history.read(kube, "ns", "zai-proxy", "a")] == ["d0"]


async def test_decisions_a_killed_leader_left_out_are_filled_in_from_the_state() -> None:
    """The new leader hands over the state's records; the ConfigMap's fuller copies win."""
    kube = ConfigMaps()
    old_leader = history.HistoryWriter(kube, "ns", "zai-proxy")
    old_leader.add("a", [record(0), record(1, metrics=3)])
    await old_leader.flush()
    # The old leader wrote d2 and d3 to the state, then died before the ConfigMap write.
    in_state = [replace(record(1, metrics=3), metrics=()), record(2), record(3), record(4)]
    new_leader = history.HistoryWriter(kube, "ns", "zai-proxy")
    new_leader.add("a", in_state)
    await new_leader.flush()
    got = await history.read(kube, "ns", "zai-proxy", "a")
    assert [r.decision for r in got] == ["d0", "d1", "d2", "d3", "d4"]
    assert len(got[1].metrics) == 3


def test_merge_knows_a_record_whose_long_texts_the_annotation_cut() -> None:
    """The annotation cuts a long `by` (an alert's): its copy is still the same decision."""
    full = replace(record(1, metrics=1), by="alert:" + "x" * 400)
    annotated = compact(make_state(Phase.HOLDING, history=(full,))).history[0]
    assert annotated.by != full.by
    assert history.merge([full], [annotated]) == (full,)


async def test_a_newer_format_is_refused_and_the_current_one_is_written() -> None:
    with pytest.raises(StateError, match="newer ptc"):
        history.check_version({"version": str(history.VERSION + 1)})
    history.check_version({})  # written before the version key existed: version 1
    cms = ConfigMaps()
    writer = history.HistoryWriter(cms, "default", "zai-proxy")
    writer.add("t", [record(0)])
    await writer.flush()
    assert cms.objects[NAME][0][history.VERSION_KEY] == str(history.VERSION)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, "[" + "9" * 5000 + "]", '[{"at": "2026-01-01T00:00:00Z", "step": 1e999}]'],
    ids=["deep", "long-number", "infinite-step"],
)
def test_hostile_json_is_a_state_error_not_a_crash(text: str) -> None:
    with pytest.raises(StateError):
        history.decode(text)


def test_records_older_ptc_wrote_to_the_configmap_still_read() -> None:
    """ConfigMaps persist for months: records as ptc wrote them before state v2 (asdict order,
    null readings, no `by` or share in the oldest) read unchanged, and are written back alike."""
    written = (
        '[{"at":"2026-11-27T12:00:00Z","phase":"pending","step":0,"decision":"started",'
        '"reason":"started","metrics":[]},'
        '{"at":"2026-11-27T12:01:00Z","phase":"holding","step":1,"decision":"hold",'
        '"reason":"held","metrics":[{"name":"err","verdict":"inconclusive","value":null,'
        '"stable":null,"threshold":"<= 0.05","detail":"no data"}],"by":"ptc",'
        '"weight_observed":12.5}]'
    )
    first, second = history.decode(written)
    assert first == DecisionRecord(T0, "pending", 0, "started", "started")
    assert second.metrics == (
        MetricRecord("err", "inconclusive", None, None, "<= 0.05", "no data"),
    )
    assert second.weight_observed == 12.5
    assert json.loads(history.encode((first, second)))[1] == json.loads(written)[1]
