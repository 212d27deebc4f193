"""The status document and its table (snapshot with a fixed time)."""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.core.analysis.evaluate import MetricResult, Verdict
from controller.core.state import DecisionRecord, Hold, MetricRecord, Phase, RolloutState
from controller.core.status import hold_window, status_document
from controller.ops.status_view import render_text
from controller.shell.lag import RolloutLag
from tests.unit.states import state as make_state

SNAPSHOT = Path(__file__).parent / "snapshots" / "status_table.txt"
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def state() -> RolloutState:
    history = (
        DecisionRecord(T0, "preflight", 0, "started", "rollout of zai-proxy-v2 (v2) started"),
        DecisionRecord(
            T0 + timedelta(seconds=5),
            "progressing",
            1,
            "step-reached",
            "step 2/3: 2 canary / 2 stable (50.0%), holding 5m",
            (MetricRecord("bad-gateway-ratio", "pass", 0.01, None, "<= 0.05", "ok"),),
        ),
        DecisionRecord(
            T0 + timedelta(seconds=6), "progressing", 1, "paused", "paused by alice", by="alice"
        ),
    )
    return make_state(
        Phase.PROGRESSING,
        step=1,
        rollout="zai-proxy",
        stable="zai-proxy",
        canary="zai-proxy-v2",
        steps=3,
        weight=50.0,
        hold=Hold(T0 + timedelta(seconds=5), T0 + timedelta(minutes=5, seconds=5)),
        message="holding",
        history=history,
        writer="ptc-0",
    )


def document(now: datetime, with_state: RolloutState | None = None) -> dict:  # type: ignore[type-arg]
    return status_document(
        name="zai-proxy",
        namespace="devpod",
        service="zai-proxy",
        stable="zai-proxy",
        canary="zai-proxy-v2",
        steps=3,
        state=with_state or state(),
        replicas={"stable": {"spec": 2, "ready": 2}, "canary": {"spec": 2, "ready": 2}},
        endpoints={"canary": 2, "stable": 2},
        selector={"app": "zai-proxy"},
        analysis=None,
        waiting="step 2: holding until 12:05:05",
        problem=None,
        now=now,
    )


def test_document_fields() -> None:
    doc = document(T0 + timedelta(minutes=2, seconds=35))
    assert doc["phase"] == "progressing" and doc["step"] == 1 and doc["steps"] == 3
    assert doc["weight"] == {"desired": 50.0, "actual": 50.0, "observed": None}
    assert doc["hold"] == {
        "since": "2026-11-27T12:00:05Z",
        "until": "2026-11-27T12:05:05Z",
        "progress": 0.5,
    }
    # Without a live analysis, the metrics of the latest decision that had some.
    assert doc["analysis"]["metrics"][0]["name"] == "bad-gateway-ratio"
    assert doc["decisions"][-1]["by"] == "alice"
    assert hold_window(None) is None


def test_table_snapshot() -> None:
    text = render_text(
        [document(T0 + timedelta(minutes=2, seconds=35))],
        T0 + timedelta(minutes=2, seconds=35),
        width=140,
    )
    if os.environ.get("PTC_UPDATE_SNAPSHOTS"):  # after a deliberate layout change; review it
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), "table changed: PTC_UPDATE_SNAPSHOTS=1 rewrites it"


def test_status_from_the_controller_shows_its_lag_under_the_table() -> None:
    now = T0 + timedelta(minutes=2, seconds=35)
    calm = document(now)
    calm["lag"] = RolloutLag(0.004, 0.25, 10.0).document()
    late = {**document(now), "name": "slow", "lag": RolloutLag(7.5, 14.0, 10.0).document()}
    # the caption wraps to the table's width: compare words, not lines
    text = " ".join(render_text([calm, late], now, width=200).split())
    assert "controller lag: reconcile 7.5s (devpod/slow), verdict age 14s (devpod/slow)" in text
    assert "shard the rollouts over more replicas (ptc run --shards)" in text
    assert "1 rollout(s) received verdicts older than their analysis interval" in text
    # from the cluster (no controller): no lag to show, and no line for it
    assert "controller lag" not in render_text([document(now)], now, width=200)
    garbled = {**document(now), "lag": {"reconcileSeconds": "soon", "evaluationSeconds": True}}
    assert "reconcile - (-)" in render_text([garbled], now, width=200)


def test_a_metric_reads_the_same_live_recorded_and_in_the_decisions() -> None:
    # Prometheus' 0/0 is NaN, which JSON lacks: no value, in every place alike.
    result = MetricResult("bad-gateway-ratio", Verdict.PASS, 0.01, math.nan, "<= 0.05", "ok")
    live = result.to_json()
    assert live == {
        "name": "bad-gateway-ratio",
        "verdict": "pass",
        "value": 0.01,
        "stable": None,
        "threshold": "<= 0.05",
        "reason": "ok",
    }
    recorded = replace(state().history[1], metrics=(result.to_record(),))
    history = (state().history[0], recorded, state().history[2])
    doc = document(T0 + timedelta(minutes=1), replace(state(), history=history))
    assert doc["analysis"]["metrics"] == [live]  # from the history, without a live analysis
    assert doc["decisions"][1]["metrics"] == [live]
    json.dumps(doc, allow_nan=False)


def test_a_history_configmap_not_used_is_said_under_the_decisions() -> None:
    now = T0 + timedelta(minutes=2, seconds=35)
    doc = document(now)
    doc["history"] = {"source": "annotation", "problem": "history ConfigMap x not used (forbidden)"}
    assert "history ConfigMap x not used (forbidden)" in render_text([doc], now, width=200)
    doc["history"] = {"source": "configmap", "problem": None}
    assert "not used" not in render_text([doc], now, width=200)


def test_shards_table_lists_each_shard_its_lease_and_holder() -> None:
    from rich.console import Console

    from controller.ops.status_view import shards_table

    controller = {
        "identity": "ptc-a",
        "members": ["ptc-a", "ptc-b"],
        "shards": [
            {"shard": 0, "lease": "ptc-leader-shard-0", "holder": "ptc-a", "rollouts": 3},
            {"shard": 1, "lease": "ptc-leader-shard-1", "holder": None, "rollouts": 1},
        ],
    }
    console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
    console.print(shards_table(controller))
    text = console.export_text()
    rows = [line.split("│")[1:-1] for line in text.splitlines() if "│" in line]
    assert [[c.strip() for c in row] for row in rows] == [
        ["0", "ptc-leader-shard-0", "ptc-a", "3"],
        ["1", "ptc-leader-shard-1", "-", "1"],
    ]
    assert "ptc-a sees them (2 live replicas)" in text
