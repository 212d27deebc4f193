"""The state annotation stays small whatever the config; older, larger states still decode."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest

from controller.core.state import (
    HISTORY_LIMIT,
    BreachClocks,
    DecisionRecord,
    Hold,
    Holding,
    HoldKind,
    MetricRecord,
    Pause,
    Phase,
    RolloutState,
    StateError,
    decode_state,
    encode_state,
    format_timestamp,
)
from tests.unit.states import state as make_state

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BUDGET = 16 * 1024  # bytes: far below the API server's 256 KiB for all annotations


def _metric(i: int, detail: str) -> MetricRecord:
    # Metric names are at most 63 characters (config validation).
    return MetricRecord(
        name=f"m{i:02d}-" + "x" * 59,
        verdict="fail",
        value=1.2345678901234567e-300,
        stable=-9.876543210987654e300,
        threshold="<= 0.05 and <= stable x 1.5 + 0.01 " * 4,
        detail=detail,
    )


def worst_case(metrics: int) -> RolloutState:
    """Every field at its largest: many metrics, long reasons, every one of them breaching."""
    long = "a reason that goes on and on \N{WARNING SIGN} " * 200  # ~7 KB, multi-byte too
    names = [_metric(i, "").name for i in range(metrics)]
    state = make_state(
        Phase.PAUSED,  # paused while holding: the most records a state can have at once
        "f" * 16,
        rollout="r" * 253,
        stable="s" * 253,
        canary="c" * 253,
        steps=20,
        spec_hash="0" * 16,
        legacy_spec_hash=True,
        step=19,
        attempt=10,
        replicas=1000,
        promoted_step=18,
        shared_selector={f"k{i}.example.com/" + "k" * 40: "v" * 63 for i in range(5)},
        started_at=T0,
        phase_since=T0,
        hold=Hold(T0, T0),
        holding=Holding(T0, HoldKind.TRAFFIC_SHARE),
        pause=Pause(Phase.HOLDING),
        weight=99.99,
        message=long,
        last_command="c" * 64,
        writer="w" * 253,
        breach=BreachClocks(
            3, 19, {n: T0 + timedelta(microseconds=i) for i, n in enumerate(names)}
        ),
    )
    for i in range(200):
        record = DecisionRecord(
            T0 + timedelta(seconds=i),
            "holding",
            19,
            "hold-" + "d" * 40,
            long,
            tuple(_metric(j, long) for j in range(metrics)),
            by="b" * 253,
        )
        state = state.with_record(record)
    return state


def test_the_worst_case_state_stays_under_a_fixed_budget() -> None:
    """Only breach clocks grow with the metrics (one per breaching metric); the rest is fixed."""
    sizes, clocks = {}, {}
    for metrics in (3, 25, 100):
        state = worst_case(metrics)
        assert state.breach is not None
        text = encode_state(state)
        sizes[metrics] = len(text.encode())
        clocks[metrics] = len(json.dumps(json.loads(text)["breach"]).encode())
        decoded = decode_state(text)
        assert len(decoded.history) == HISTORY_LIMIT
        assert decoded.breach == state.breach  # every clock is kept
        assert all(not r.metrics for r in decoded.history[:-1])
        # The newest record keeps readings as far as they fit, in config order.
        kept = decoded.history[-1].metrics
        assert kept and [m.name for m in kept] == [_metric(i, "").name for i in range(len(kept))]
        assert sizes[metrics] - clocks[metrics] < 12 * 1024, sizes
    assert sizes[25] < BUDGET, sizes  # issue 12: a rollout with 25 metrics
    assert clocks[100] / 100 < 110, clocks  # bytes per breaching metric (63-character names)


def test_an_old_annotation_with_the_full_history_still_decodes() -> None:
    """State version 1 as ptc wrote it before: 50 records, every one with all its readings."""
    history = [
        {
            "at": format_timestamp(T0 + timedelta(seconds=i)),
            "phase": "progressing",
            "step": i % 5,
            "decision": "wait",
            "reason": f"reason {i}",
            "metrics": [
                asdict(MetricRecord(f"m{j}", "pass", 0.01 * j, 0.02, "<= 0.05", "ok"))
                for j in range(3)
            ],
            "by": "ptc",
        }
        for i in range(50)
    ]
    old = json.dumps(
        {"v": 1, "phase": "holding", "target": "t", "step": 4, "attempt": 2, "history": history}
    )
    state = decode_state(old)
    assert (state.phase, state.step, state.attempt, state.breach) == (Phase.HOLDING, 4, 2, None)
    assert len(state.history) == 50 and state.history[-1].metrics[2].value == 0.02
    # Written back in the new shape: bounded, readings on the newest record only.
    rewritten = decode_state(encode_state(state))
    assert [r.reason for r in rewritten.history] == [f"reason {i}" for i in range(40, 50)]
    assert [len(r.metrics) for r in rewritten.history] == [0] * 9 + [3]
    assert len(encode_state(state)) < len(old) / 5


def test_breach_clocks_round_trip_and_bad_ones_are_named() -> None:
    state = make_state(Phase.HOLDING, breach=BreachClocks(2, 3, {"error-ratio": T0, "p95": T0}))
    assert decode_state(encode_state(state)) == state
    data = json.loads(encode_state(state))
    assert data["breach"] == {
        "attempt": 2,
        "step": 3,
        "since": {"error-ratio": "2026-11-27T12:00:00Z", "p95": "2026-11-27T12:00:00Z"},
    }
    data["breach"]["since"]["p95"] = "yesterday"
    with pytest.raises(StateError, match=r"breach\.since\.p95"):
        decode_state(json.dumps(data))


def test_a_cut_reason_keeps_its_end_where_a_commands_id_is() -> None:
    reason = "rollback: " + "alert detail " * 60 + " [alert-0123456789abcdef]"
    record = DecisionRecord(T0, "holding", 1, "rollback", reason, by="alert:canary-502")
    state = decode_state(encode_state(make_state(Phase.ROLLING_BACK, history=(record,))))
    kept = state.history[0].reason
    assert len(kept.encode()) <= 200 < len(reason)
    assert kept.startswith("rollback: alert detail") and kept.endswith("[alert-0123456789abcdef]")
