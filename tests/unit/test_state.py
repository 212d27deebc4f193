"""The persisted rollout state (v2): its shape, its versioned JSON codec, its invariants."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.state import (
    HISTORY_LIMIT,
    STATE_VERSION,
    Bake,
    BreachClocks,
    DecisionRecord,
    End,
    Hold,
    Holding,
    HoldKind,
    Identity,
    MetricRecord,
    Pause,
    Phase,
    Progress,
    Retention,
    RolloutState,
    StateError,
    compact,
    decode_state,
    encode_state,
)
from controller.core.state.model import RECORDS
from tests.unit.states import state

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

# tz-aware UTC with microseconds, the precision the annotation keeps.
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
maybe_ts = st.none() | timestamps
numbers = st.none() | st.floats(allow_nan=False, allow_infinity=False)
small_text = st.text(max_size=20)
counts = st.integers(0, 50)

metric_records = st.builds(
    MetricRecord,
    name=small_text,
    verdict=st.sampled_from(["pass", "fail", "inconclusive", "error"]),
    value=numbers,
    stable=numbers,
    threshold=small_text,
    detail=small_text,
)
decision_records = st.builds(
    DecisionRecord,
    at=timestamps,
    phase=st.sampled_from([p.value for p in Phase]),
    step=counts,
    decision=small_text,
    reason=small_text,
    metrics=st.lists(metric_records, max_size=3).map(tuple),
    by=small_text,
    weight_observed=numbers,
)
records: dict[str, st.SearchStrategy[Any]] = {
    "hold": st.builds(Hold, timestamps, maybe_ts),
    "holding": st.builds(Holding, timestamps, st.none() | st.sampled_from(HoldKind)),
    "bake": st.one_of(
        st.builds(Bake, maybe_ts),
        st.builds(Bake, maybe_ts, timestamps, maybe_ts),
    ),
    "retention": st.builds(Retention, timestamps, maybe_ts, st.none() | small_text),
    "end": st.builds(End, timestamps),
}
pausable = [p for p in Phase if p is not Phase.PAUSED and not p.terminal]


@st.composite
def states(draw: st.DrawFn) -> RolloutState:
    """Any valid v2 state: the records its phase uses, each present or not."""
    phase = draw(st.sampled_from(Phase))
    pause = Pause(draw(st.sampled_from(pausable))) if phase is Phase.PAUSED else None
    uses = RECORDS[pause.from_phase if pause is not None else phase]
    chosen = {name: draw(st.none() | records[name]) for name in uses}
    if phase is Phase.FAILED and chosen.get("end") is not None:
        chosen["end"] = End(chosen["end"].finished_at, draw(st.none() | st.sampled_from(Phase)))
    return RolloutState(
        identity=draw(
            st.builds(
                Identity,
                revision=small_text,
                rollout=small_text,
                stable=small_text,
                canary=small_text,
                steps=counts,
                spec_hash=st.text(alphabet="0123456789abcdef", max_size=16),
                legacy_spec_hash=st.booleans(),
            )
        ),
        progress=draw(
            st.builds(
                Progress,
                phase=st.just(phase),
                step=counts,
                attempt=st.integers(1, 10),
                weight=st.floats(0, 100),
                replicas=st.none() | st.integers(1, 1000),
                shared_selector=st.dictionaries(small_text, small_text, max_size=3),
                started_at=maybe_ts,
                phase_since=maybe_ts,
                promoted_step=st.none() | counts,
            )
        ),
        pause=pause,
        message=draw(st.text(max_size=40)),
        last_command=draw(st.none() | small_text),
        writer=draw(st.none() | small_text),
        breach=draw(
            st.none()
            | st.builds(
                BreachClocks,
                attempt=st.integers(1, 10),
                step=counts,
                since=st.dictionaries(small_text, timestamps, max_size=3),
            )
        ),
        history=draw(st.lists(decision_records, max_size=HISTORY_LIMIT + 3).map(tuple)),
        **chosen,
    )


@settings(max_examples=200)
@given(states())
def test_round_trip(state: RolloutState) -> None:
    text = encode_state(state)
    decoded = decode_state(text)
    # Only what the annotation keeps comes back: readings on the newest record with any.
    assert decoded == compact(state)
    kept = state.history[-HISTORY_LIMIT:]
    newest = max((i for i, r in enumerate(kept) if r.metrics), default=-1)
    assert decoded.history == tuple(
        r if i == newest else replace(r, metrics=()) for i, r in enumerate(kept)
    )
    stamps = (decoded.progress.started_at, *(r.at for r in decoded.history))
    assert all(ts is None or ts.tzinfo == UTC for ts in stamps)
    assert encode_state(decoded) == text  # a fixed point: re-encoding changes nothing


def test_encoding_is_compact_versioned_json_with_camel_keys_and_one_object_per_record() -> None:
    text = encode_state(
        state(
            Phase.HOLDING,
            "abc",
            step=2,
            shared_selector={"app": "web"},
            started_at=T0 + timedelta(microseconds=5),
            hold=Hold(T0, T0 + timedelta(minutes=1)),
            holding=Holding(T0, HoldKind.CAPACITY),
            history=(
                DecisionRecord(
                    T0, "progressing", 1, "promote", "all-pass", (MetricRecord("e", "pass"),)
                ),
            ),
        )
    )
    assert " " not in text
    data = json.loads(text)
    assert data["v"] == STATE_VERSION == 2
    assert data["identity"] == {"revision": "abc"}  # defaults are left out
    assert data["progress"] == {
        "phase": "holding",
        "step": 2,
        "sharedSelector": {"app": "web"},
        "startedAt": "2026-11-27T12:00:00.000005Z",
    }
    assert data["hold"] == {"reachedAt": "2026-11-27T12:00:00Z", "until": "2026-11-27T12:01:00Z"}
    assert data["holding"] == {"since": "2026-11-27T12:00:00Z", "kind": "capacity"}
    # Decision records keep the shape every ptc wrote (the history ConfigMap's too).
    assert data["history"][0] == {
        "at": "2026-11-27T12:00:00Z",
        "phase": "progressing",
        "step": 1,
        "decision": "promote",
        "reason": "all-pass",
        "metrics": [{"name": "e", "verdict": "pass"}],
    }
    assert set(data) == {"v", "identity", "progress", "hold", "holding", "history"}


def test_other_timezones_are_stored_as_utc() -> None:
    plus_two = datetime(2026, 11, 27, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    text = encode_state(state(Phase.PENDING, started_at=plus_two))
    assert json.loads(text)["progress"]["startedAt"] == "2026-11-27T12:00:00Z"
    decoded = decode_state(text).progress.started_at
    assert decoded == plus_two and decoded is not None and decoded.tzinfo == UTC


def test_naive_timestamps_mean_utc_both_ways() -> None:
    naive = datetime(2026, 11, 27, 12, 0)
    text = encode_state(state(Phase.PENDING, started_at=naive))
    assert json.loads(text)["progress"]["startedAt"] == "2026-11-27T12:00:00Z"  # not local time
    raw = '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"pending","startedAt":"2026-11-27T12:00:00"}}'  # noqa: E501
    assert decode_state(raw).progress.started_at == T0


def test_with_record_bounds_the_history() -> None:
    s = state(Phase.PROGRESSING)
    for i in range(HISTORY_LIMIT + 7):
        rec = DecisionRecord(T0 + timedelta(seconds=i), "progressing", i, "wait", f"r{i}")
        s = s.with_record(rec, step=i)
    assert len(s.history) == HISTORY_LIMIT
    assert [r.step for r in s.history] == list(range(7, HISTORY_LIMIT + 7))
    assert s.step == HISTORY_LIMIT + 6
    assert decode_state(encode_state(s)) == s


def test_with_record_applies_changes_and_keeps_the_original() -> None:
    before = state(Phase.PROGRESSING, hold=Hold(T0))
    rec = DecisionRecord(T0, "progressing", 0, "pause", "manual gate")
    after = before.with_record(rec, phase=Phase.PAUSED, pause=Pause(Phase.PROGRESSING))
    assert (after.phase, after.pause, after.hold, after.history) == (
        Phase.PAUSED,
        Pause(Phase.PROGRESSING),
        Hold(T0),  # kept for the resume
        (rec,),
    )
    assert before.history == () and before.phase is Phase.PROGRESSING


def test_leaving_a_phase_drops_its_records() -> None:
    baking = state(Phase.BAKING, bake=Bake(T0, T0, T0), holding=Holding(T0, HoldKind.ANALYSIS))
    scaling = baking.moved(phase=Phase.SCALING_DOWN)
    assert (scaling.bake, scaling.holding) == (None, None)
    paused = baking.moved(phase=Phase.PAUSED, pause=Pause(Phase.BAKING))
    assert paused.bake == baking.bake and paused.holding == baking.holding
    resumed = paused.moved(phase=Phase.BAKING)
    assert resumed.pause is None and resumed.bake == baking.bake
    failed = paused.moved(phase=Phase.FAILED, end=End(T0, Phase.PAUSED))
    assert (failed.pause, failed.bake, failed.holding) == (None, None, None)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: state(Phase.PAUSED, pause=None), "a paused state lacks a pause"),
        (lambda: state(Phase.HOLDING, pause=Pause(Phase.PROGRESSING)), "has a pause"),
        (lambda: state(Phase.BAKING, hold=Hold(T0)), "a baking state has no hold"),
        (lambda: state(Phase.COMPLETED, end=End(T0, Phase.PREFLIGHT)), "failed-in phase"),
        (lambda: state(Phase.PROGRESSING, end=End(T0)), "a progressing state has no end"),
        (lambda: Pause(Phase.COMPLETED), "cannot pause from completed"),
        (lambda: Bake(T0, None, T0), "a bake with an end has a start"),
        (lambda: state(Phase.PROGRESSING).moved(phase=Phase.PAUSED), "lacks a pause"),
    ],
)
def test_invalid_combinations_cannot_be_built(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_newer_version_is_refused_naming_both_versions() -> None:
    with pytest.raises(StateError) as info:
        decode_state('{"v":7,"phase":"some-future-phase","target":"t"}')
    assert str(info.value) == (
        "state was written by a newer ptc (state version 7; this ptc reads up to 2)"
        ": upgrade ptc, or remove the ptc.dev/state annotation to start over"
    )


def test_unknown_keys_of_the_same_version_are_ignored() -> None:
    later = '{"v":2,"identity":{"revision":"t","x":1},"progress":{"phase":"pending"},"later":1}'
    assert decode_state(later) == state(Phase.PENDING)
    assert decode_state('{"v":1,"phase":"pending","target":"t","later":1}') == state(Phase.PENDING)


def test_failed_in_round_trips() -> None:
    failed = state(Phase.FAILED, end=End(T0, failed_in=Phase.PREFLIGHT), attempt=2)
    text = encode_state(failed)
    assert json.loads(text)["end"] == {
        "finishedAt": "2026-11-27T12:00:00Z",
        "failedIn": "preflight",
    }
    assert decode_state(text) == failed
    decoded = decode_state(text).end
    assert decoded is not None and decoded.failed_in is Phase.PREFLIGHT  # the enum, not a str


V2 = '"v":2,"identity":{"revision":"t"},"progress":{"phase":"pending"}'
KNOWN = (
    "'pending', 'preflight', 'progressing', 'holding', 'paused', 'flipping', 'baking', "
    "'scaling-down', 'completed', 'rolling-back', 'rolled-back' or 'failed'"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "state annotation is not JSON: Expecting value at line 1 column 1"),
        (
            '{"v":2,',
            "state annotation is not JSON: Expecting property name enclosed in double "
            "quotes at line 1 column 8",
        ),
        ("[1]", "state annotation is not a JSON object: '[1]'"),
        (
            "{}",
            "state annotation has no valid version field 'v' (got None; expected an integer "
            "from 1 to 2)",
        ),
        ('{"v":"2"}', "state annotation has no valid version field 'v' (got '2'; expected an "
                      "integer from 1 to 2)"),
        ('{"v":true}', "state annotation has no valid version field 'v' (got True; expected an "
                       "integer from 1 to 2)"),
        ('{"v":0}', "state annotation has no valid version field 'v' (got 0; expected an "
                    "integer from 1 to 2)"),
        ('{"v":2}', "state field 'identity': missing"),
        ('{"v":2,"identity":{"revision":"t"}}', "state field 'progress': missing"),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"nope"}}',
            f"state field 'progress.phase': Input should be {KNOWN}, got 'nope'",
        ),
        (
            '{"v":2,"identity":{"revision":5},"progress":{"phase":"pending"}}',
            "state field 'identity.revision': Input should be a valid string, got 5",
        ),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"pending","step":"2"}}',
            "state field 'progress.step': Input should be a valid integer, got '2'",
        ),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"pending","attempt":1.5}}',
            "state field 'progress.attempt': Input should be a valid integer, got 1.5",
        ),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"pending","weight":true}}',
            "state field 'progress.weight': Input should be a valid number, got True",
        ),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"pending","step":-1}}',
            "state field 'progress.step': Input should be greater than or equal to 0, got -1",
        ),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"pending",'
            '"sharedSelector":{"app":1}}}',
            "state field 'progress.sharedSelector.app': Input should be a valid string, got 1",
        ),
        (
            "{" + V2 + ',"writer":[]}',
            "state field 'writer': Input should be a valid string, got []",
        ),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"holding"},'
            '"hold":{"reachedAt":"yesterday"}}',
            "state field 'hold.reachedAt': bad timestamp 'yesterday'",
        ),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"holding"},'
            '"hold":{"reachedAt":5}}',
            "state field 'hold.reachedAt': expected a timestamp string, got 5",
        ),
        (
            "{" + V2 + ',"hold":{"reachedAt":"2026-01-01T00:00:00Z"}}',
            "state annotation is not a valid state: a pending state has no hold",
        ),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"paused"}}',
            "state annotation is not a valid state: a paused state lacks a pause",
        ),
        (
            '{"v":2,"identity":{"revision":"t"},"progress":{"phase":"paused"},'
            '"pause":{"fromPhase":"failed"}}',
            "state field 'pause': cannot pause from failed",
        ),
        ("{" + V2 + ',"history":5}', "state field 'history': Input should be a valid tuple, got 5"),
        (
            "{" + V2 + ',"history":[5]}',
            "state field 'history[0]': Input should be a dictionary or an instance of "
            "DecisionRecord, got 5",
        ),
        ("{" + V2 + ',"history":[{}]}', "state field 'history[0].at': missing"),
        (
            "{" + V2 + ',"history":[{"at":"2026-01-01T00:00:00Z","phase":"p","step":"x",'
            '"decision":"d","reason":"r"}]}',
            "state field 'history[0].step': Input should be a valid integer, got 'x'",
        ),
        (
            "{" + V2 + ',"history":[{"at":null,"phase":"p","step":1,"decision":"d","reason":"r"}]}',
            "state field 'history[0].at': expected a timestamp string, got None",
        ),
        (
            "{" + V2 + ',"history":[{"at":"2026-01-01T00:00:00Z","phase":"p","step":1,'
            '"decision":"d","reason":"r","metrics":[{"name":"m"}]}]}',
            "state field 'history[0].metrics[0].verdict': missing",
        ),
        (
            "{" + V2 + ',"history":[{"at":"2026-01-01T00:00:00Z","phase":"p","step":1,'
            '"decision":"d","reason":"r","metrics":[{"name":"m","verdict":"pass","value":"1"}]}]}',
            "state field 'history[0].metrics[0].value': Input should be a valid number, got '1'",
        ),
        (
            "{" + V2 + ',"breach":{"attempt":1,"step":0,"since":{"p95":"yesterday"}}}',
            "state field 'breach.since.p95': bad timestamp 'yesterday'",
        ),
    ],
)  # fmt: skip
def test_malformed_state_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(StateError) as info:
        decode_state(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_phase_terminal() -> None:
    assert {p for p in Phase if p.terminal} == {Phase.COMPLETED, Phase.ROLLED_BACK, Phase.FAILED}


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,  # fits the 256 KiB annotation limit
        '{"v": 1, "phase": "holding", "target": "t", "step": ' + "9" * 5000 + "}",
        '{"v": 2, "identity": {"revision": "t"}, "progress": {"phase": "holding", "step": '
        + "9" * 4000
        + "}}",
        '{"v": 2, "identity": {"revision": "t"}, "progress": {"phase": "holding"}, "history": '
        + "[" * 10_000
        + "]" * 10_000
        + "}",
    ],
    ids=["deep", "long-number", "long-number-v2", "deep-in-a-field"],
)
def test_hostile_json_in_the_annotation_is_a_state_error_not_a_crash(text: str) -> None:
    with pytest.raises(StateError):
        decode_state(text)
