"""The report's timeline model, built from handcrafted states (no I/O, no plotting)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from controller.core.config import load_config_text
from controller.core.config.model import Rollout
from controller.core.state import (
    HISTORY_LIMIT,
    DecisionRecord,
    End,
    MetricRecord,
    Phase,
    RolloutState,
    decode_state,
    encode_state,
)
from controller.ops.report.model import (
    MarkerKind,
    MetricSeries,
    Point,
    ReportSeries,
    parse_threshold,
)
from controller.ops.report.timeline import build_timeline, time_span
from tests.unit.states import state as make_state

T0 = datetime(2026, 11, 3, 10, 0, 0, tzinfo=UTC)
BAD_GATEWAY_THRESHOLD = "<= 0.05, <= stable*1.5+0.01"


def at(minutes: float) -> datetime:
    """T0 plus `minutes`."""
    return T0 + timedelta(minutes=minutes)


def _metrics(bad: float, verdict: str = "pass", stable: float = 0.01) -> tuple[MetricRecord, ...]:
    return (
        MetricRecord(
            "bad-gateway-ratio",
            verdict,
            bad,
            stable,
            BAD_GATEWAY_THRESHOLD,
            f"{bad:.4g} vs {BAD_GATEWAY_THRESHOLD} (stable {stable:.4g})",
        ),
        MetricRecord("p95-latency", "pass", 0.21, 0.2, "<= stable*2+0.05", "0.21 vs ..."),
    )


def rolled_back_state() -> RolloutState:
    """Rollout `web`: steps 25% and 50%, an analysis hold, paused and resumed by alice, then
    a rollback on bad-gateway-ratio (0.12 vs <= 0.05) and the rolled-back end."""

    def rec(
        minutes: float,
        phase: str,
        step: int,
        decision: str,
        reason: str,
        metrics: tuple[MetricRecord, ...] = (),
        by: str = "ptc",
    ) -> DecisionRecord:
        return DecisionRecord(at(minutes), phase, step, decision, reason, metrics, by)

    history = (
        rec(0, "pending", 0, "started", "rollout of web-v2 (v2) over web started, attempt 1"),
        rec(0.05, "preflight", 0, "preflight-passed", "preflight passed; shifting 4 replica(s)"),
        rec(0.1, "progressing", 0, "select-shared", "Service selector set to {'app': 'web'}"),
        rec(0.2, "progressing", 0, "scale-canary", "scale canary web-v2 to 1: step 1"),
        rec(0.5, "progressing", 0, "step-reached",
            "step 1/3: 1 canary / 3 stable (25.0%), holding 2m", _metrics(0.002)),
        rec(2.5, "progressing", 0, "advance", "step 1 done; next: step 2 at 50%",
            _metrics(0.004)),
        rec(2.6, "progressing", 1, "scale-canary", "scale canary web-v2 to 2: step 2",
            _metrics(0.004)),
        rec(2.8, "progressing", 1, "scale-stable", "scale stable web to 2: step 2",
            _metrics(0.004)),
        rec(3.0, "progressing", 1, "step-reached",
            "step 2/3: 2 canary / 2 stable (50.0%), holding 5m", _metrics(0.006)),
        rec(8.0, "progressing", 1, "hold",
            "step 2: analysis inconclusive: bad-gateway-ratio 0.04 vs <= 0.05",
            _metrics(0.04, "inconclusive", stable=0.03)),
        rec(8.5, "holding", 1, "paused", "paused by alice", _metrics(0.05, "pass", 0.03),
            by="alice"),
        rec(9.0, "paused", 1, "resumed", "resumed by alice", _metrics(0.07, "pass", 0.03),
            by="alice"),
        rec(10.0, "holding", 1, "rollback",
            "analysis failed: bad-gateway-ratio 0.12 vs <= 0.05, <= stable*1.5+0.01 "
            "(stable 0.01)", _metrics(0.12, "fail")),
        rec(10.1, "rolling-back", 1, "select-stable", "Service selector set back"),
        rec(10.3, "rolling-back", 1, "scale-canary", "scale canary web-v2 to 0: rollback"),
        rec(10.7, "rolling-back", 1, "rolled-back",
            "rolled back: 4 stable pod(s) Ready, canary at 0; `ptc retry` starts again"),
    )  # fmt: skip
    return make_state(
        Phase.ROLLED_BACK,
        "abc",
        rollout="web",
        step=1,
        replicas=4,
        attempt=1,
        started_at=at(0),
        phase_since=at(10.7),
        end=End(at(10.7)),
        message=history[-1].reason,
        history=history,
    )


CONFIG = """
rollouts:
  - name: web
    namespace: shop
    service: web
    stable: {deployment: web}
    canary: {deployment: web-v2, version: v2}
    replicas: 4
    maxSurge: 1
    steps:
      - {weight: 25, hold: 2m}
      - {weight: 50, hold: 5m}
      - {weight: 75, hold: 5m}
    analysis:
      metrics:
        - name: bad-gateway-ratio
          counterRatio:
            metric: requests_total
            numerator: {code: "502"}
          max: 0.05
          compare: {factor: 1.5, slack: 0.01}
        - name: error-budget
          gauge: {metric: budget_left}
          min: 0.2
"""


def web_rollout() -> Rollout:
    """The config of rollout `web` (steps 25/50/75 of 4 replicas)."""
    return load_config_text(CONFIG, "web.yaml").config.rollout("web")


def by_decision(state: RolloutState, **kwargs: object) -> dict[str, list[tuple[datetime, str]]]:
    timeline = build_timeline(state, **kwargs)  # type: ignore[arg-type]
    out: dict[str, list[tuple[datetime, str]]] = {}
    for m in timeline.markers:
        out.setdefault(m.decision, []).append((m.at, m.label))
    return out


def test_markers_carry_the_decisions_with_their_times_and_labels() -> None:
    markers = by_decision(rolled_back_state())
    assert markers["step-reached"] == [
        (at(0.5), "step 1 reached 25%"),
        (at(3.0), "step 2 reached 50%"),
    ]
    assert markers["advance"] == [(at(2.5), "step 1 done")]
    assert markers["hold"] == [(at(8.0), "hold (analysis)")]
    assert markers["paused"] == [(at(8.5), "paused by alice")]
    assert markers["resumed"] == [(at(9.0), "resumed by alice")]
    assert markers["rollback"] == [(at(10.0), "ROLLBACK: bad-gateway-ratio")]
    assert markers["rolled-back"] == [(at(10.7), "rolled back")]


def test_mechanics_are_in_the_table_but_not_on_the_chart() -> None:
    timeline = build_timeline(rolled_back_state())
    drawn = {m.decision for m in timeline.markers}
    assert not drawn & {"scale-canary", "scale-stable", "select-shared", "select-stable"}
    assert len(timeline.rows) == len(rolled_back_state().history)
    assert [r.index for r in timeline.rows] == list(range(1, 17))
    # A marker's number is its row in the table.
    rollback = next(m for m in timeline.markers if m.decision == "rollback")
    assert timeline.rows[rollback.index - 1].record.decision == "rollback"


def test_marker_kinds_put_commands_and_rollbacks_apart() -> None:
    kinds = {m.decision: m.kind for m in build_timeline(rolled_back_state()).markers}
    assert kinds["paused"] is MarkerKind.COMMAND  # given by alice, not by the controller
    assert kinds["resumed"] is MarkerKind.COMMAND
    assert kinds["rollback"] is MarkerKind.ROLLBACK
    assert kinds["rolled-back"] is MarkerKind.ROLLBACK
    assert kinds["hold"] is MarkerKind.HOLD
    assert kinds["step-reached"] is MarkerKind.STEP


def test_an_abort_is_a_rollback_by_whoever_gave_it() -> None:
    state = rolled_back_state()
    history = list(state.history)
    history[12] = replace(history[12], reason="aborted by bob", by="bob", metrics=())
    timeline = build_timeline(replace(state, history=tuple(history)))
    rollback = next(m for m in timeline.markers if m.decision == "rollback")
    assert (rollback.kind, rollback.label, rollback.by) == (
        MarkerKind.ROLLBACK,
        "rollback by bob",
        "bob",
    )


def test_desired_weight_steps_from_the_step_records() -> None:
    timeline = build_timeline(rolled_back_state())
    assert timeline.weight_source == "records"
    assert [(p.at, p.value) for p in timeline.desired_weight] == [
        (at(0), 0.0),
        (at(0.5), 25.0),
        (at(3.0), 50.0),
        (at(10.0), 0.0),  # the rollback wants canary at 0 at once
        (at(10.7), 0.0),  # drawn to the end
    ]


def test_desired_weight_comes_from_the_config_when_given() -> None:
    state = rolled_back_state()
    # Reasons without the split's weight: only the config can tell.
    history = tuple(
        replace(r, reason="step reached") if r.decision == "step-reached" else r
        for r in state.history
    )
    timeline = build_timeline(replace(state, history=history), rollout=web_rollout())
    assert timeline.weight_source == "config"
    assert [p.value for p in timeline.desired_weight] == [0.0, 25.0, 50.0, 0.0, 0.0]
    assert timeline.namespace == "shop"
    without_config = build_timeline(replace(state, history=history))
    assert [p.value for p in without_config.desired_weight] == [0.0, 0.0]


def test_flip_and_completion_reach_100_percent() -> None:
    state = rolled_back_state()
    forward = [r for r in state.history if r.at <= at(3.0)]
    tail = [
        DecisionRecord(at(9), "progressing", 3, "flip", "all 3 steps done"),
        DecisionRecord(at(9.5), "flipping", 3, "flipped", "Service selector pinned"),
        DecisionRecord(at(10), "baking", 3, "bake-started", "baking"),
        DecisionRecord(at(20), "baking", 3, "bake-passed", "bake passed"),
        DecisionRecord(at(21), "scaling-down", 3, "completed", "rollout complete"),
    ]
    done = state.moved(phase=Phase.COMPLETED, end=End(at(21)), history=(*forward, *tail))
    timeline = build_timeline(done)
    assert [(p.at, p.value) for p in timeline.desired_weight][-3:] == [
        (at(3.0), 50.0),
        (at(9.5), 100.0),
        (at(21), 100.0),
    ]
    kinds = {m.decision: m.kind for m in timeline.markers}
    assert kinds["flipped"] is MarkerKind.FLIP
    assert kinds["bake-started"] is MarkerKind.BAKE
    assert kinds["completed"] is MarkerKind.COMPLETED
    assert [s.phase for s in timeline.spans][-3:] == ["flipping", "baking", "scaling-down"]


def test_the_failing_metric_is_plotted_against_its_thresholds() -> None:
    timeline = build_timeline(rolled_back_state())
    panels = {p.name: p for p in timeline.metrics}
    assert list(panels) == ["bad-gateway-ratio", "p95-latency"]
    bad = panels["bad-gateway-ratio"]
    assert bad.threshold_text == BAD_GATEWAY_THRESHOLD
    assert [(p.at, p.value) for p in bad.failing] == [(at(10.0), 0.12)]
    assert {p.value for p in bad.max_limit} == {0.05}
    # stable * 1.5 + 0.01 at each recorded stable value
    relative = {p.at: p.value for p in bad.relative_limit}
    assert relative[at(10.0)] == pytest.approx(0.025)
    assert relative[at(8.0)] == pytest.approx(0.055)
    # Records taken at the same instant count once.
    assert len({p.at for p in bad.canary}) == len(bad.canary)
    assert bad.canary[-1] == Point(at(10.0), 0.12)
    latency = panels["p95-latency"]
    assert latency.max_limit == () and latency.failing == ()
    assert latency.relative_limit[0].value == pytest.approx(0.45)


def test_configured_metrics_without_records_still_get_a_panel() -> None:
    timeline = build_timeline(rolled_back_state(), rollout=web_rollout())
    panels = {p.name: p for p in timeline.metrics}
    assert list(panels) == ["bad-gateway-ratio", "error-budget", "p95-latency"]
    assert panels["error-budget"].threshold_text == ">= 0.2"
    assert panels["error-budget"].canary == ()


def test_prometheus_series_are_attached_to_their_panels() -> None:
    series = ReportSeries(
        weight_actual=(Point(at(1), 24.0), Point(at(4), 49.5)),
        metrics={
            "bad-gateway-ratio": MetricSeries(
                canary=(Point(at(9), 0.1),),
                stable=(Point(at(9), 0.01),),
                canary_query="sum(rate(canary))",
                stable_query="sum(rate(stable))",
            )
        },
        source="Prometheus http://prom:9090",
        notes=("Prometheus returned no samples for: p95-latency",),
    )
    timeline = build_timeline(rolled_back_state(), series)
    assert timeline.actual_weight == series.weight_actual
    bad = next(p for p in timeline.metrics if p.name == "bad-gateway-ratio")
    assert bad.range_canary == (Point(at(9), 0.1),)
    assert bad.queries == ("sum(rate(canary))", "sum(rate(stable))")
    assert "Prometheus returned no samples for: p95-latency" in timeline.notes
    assert timeline.series_source == "Prometheus http://prom:9090"


def test_phase_spans_follow_the_records() -> None:
    spans = [(s.start, s.end, s.phase) for s in build_timeline(rolled_back_state()).spans]
    assert (at(8.0), at(8.5), "holding") in spans
    assert (at(8.5), at(9.0), "paused") in spans
    assert (at(9.0), at(10.0), "holding") in spans
    assert (at(10.0), at(10.7), "rolling-back") in spans


def test_a_running_rollout_ends_now_and_a_finished_one_at_its_end() -> None:
    state = rolled_back_state()
    assert time_span(state, now=at(60)) == (at(0), at(10.7))
    running = state.moved(
        phase=Phase.HOLDING, history=tuple(r for r in state.history if r.at <= at(8.0))
    )
    timeline = build_timeline(running, now=at(12))
    assert timeline.end == at(12)
    assert timeline.desired_weight[-1] == Point(at(12), 50.0)
    assert timeline.spans[-1].phase == "holding"


def test_a_truncated_history_is_said_and_starts_with_unknown_weight() -> None:
    state = rolled_back_state()
    records = [
        DecisionRecord(at(i / 10), "holding", 1, "hold", "step 2: analysis pending")
        for i in range(HISTORY_LIMIT - 1)
    ]
    last = DecisionRecord(at(6), "holding", 1, "rollback", "analysis failed: x")
    truncated = replace(state, history=(*records, last))
    timeline = build_timeline(truncated)
    assert any(f"last {HISTORY_LIMIT} decisions" in n for n in timeline.notes)
    assert [p.value for p in timeline.desired_weight] == [0.0, 0.0]  # known from the rollback on


def test_an_empty_history_gives_an_empty_timeline() -> None:
    state = make_state(Phase.PENDING, rollout="web", phase_since=at(0))
    timeline = build_timeline(state, now=at(1))
    assert timeline.markers == () and timeline.rows == () and timeline.metrics == ()
    assert "no decisions recorded yet" in timeline.notes
    assert timeline.end - timeline.start == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<= 0.05", (0.05, None, None, 0.0, False)),
        (">= 0.9", (None, 0.9, None, 0.0, False)),
        ("<= 0.05, <= stable*1.5+0.01", (0.05, None, 1.5, 0.01, False)),
        (">= stable*2+0", (None, None, 2.0, 0.0, True)),
        ("<= 1e-05", (1e-05, None, None, 0.0, False)),
        ("", (None, None, None, 0.0, False)),
        ("whatever", (None, None, None, 0.0, False)),
    ],
)
def test_threshold_text_is_parsed(
    text: str, expected: tuple[float | None, float | None, float | None, float, bool]
) -> None:
    t = parse_threshold(text)
    assert (t.max, t.min, t.factor, t.slack, t.higher_is_better) == expected


def test_a_step_reached_without_weight_leaves_a_nan_free_label() -> None:
    state = rolled_back_state()
    history = tuple(
        replace(r, reason="reached") if r.decision == "step-reached" else r for r in state.history
    )
    labels = [m.label for m in build_timeline(replace(state, history=history)).markers]
    assert "step 1 reached" in labels
    assert not any("nan" in label for label in labels)
    assert not any(math.isnan(p.value) for p in build_timeline(state).desired_weight)


def test_a_config_other_than_the_one_the_rollout_started_under_is_noted() -> None:
    spec = web_rollout()
    started_under = with_hash(rolled_back_state(), spec.spec_hash())
    assert not any("config" in n for n in build_timeline(started_under, rollout=spec).notes)
    edited = load_config_text(CONFIG.replace("max: 0.05", "max: 0.08"), "web.yaml").config
    notes = build_timeline(started_under, rollout=edited.rollout("web")).notes
    assert any("differs from the one this rollout started under" in n for n in notes)
    # States from before the hash was recorded say nothing either way.
    unknown = with_hash(started_under, "")
    assert not any(
        "config" in n for n in build_timeline(unknown, rollout=edited.rollout("web")).notes
    )


def with_hash(state: RolloutState, spec_hash: str, legacy: bool = False) -> RolloutState:
    return replace(
        state, identity=replace(state.identity, spec_hash=spec_hash, legacy_spec_hash=legacy)
    )


def _compact_form(spec: Rollout) -> str:
    """`spec_hash` as ptc before the canonical form changed computed it (compact JSON)."""
    dump = json.dumps(
        spec.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(dump.encode()).hexdigest()[:16]


def test_a_hash_from_an_older_ptc_is_unknown_rather_than_a_mismatch() -> None:
    spec = web_rollout()
    edited = load_config_text(CONFIG.replace("max: 0.05", "max: 0.08"), "web.yaml").config
    old_form = _compact_form(spec)
    assert old_form != spec.spec_hash()  # the canonical form did change
    # A state v1 with the older form of this very config: the same config, not "differs".
    migrated = with_hash(rolled_back_state(), old_form, legacy=True)
    assert not any("config" in n for n in build_timeline(migrated, rollout=spec).notes)
    # ... or with a hash neither form gives for this config: unknown, not a false mismatch.
    notes = build_timeline(migrated, rollout=edited.rollout("web")).notes
    assert any("unknown (written by an older ptc" in n for n in notes)
    assert not any("differs" in n for n in notes)
    # A hash this ptc wrote is trusted: another config differs.
    written = with_hash(rolled_back_state(), spec.spec_hash())
    assert any("differs" in n for n in build_timeline(written, rollout=edited.rollout("web")).notes)


def test_a_migrated_v1_state_marks_its_hash_legacy() -> None:
    v1 = '{"v":1,"phase":"completed","target":"t","specHash":"0123456789abcdef"}'
    identity = decode_state(v1).identity
    assert identity.spec_hash == "0123456789abcdef" and identity.legacy_spec_hash
    assert decode_state(encode_state(decode_state(v1))).identity.legacy_spec_hash
