"""The persisted rollout state and its versioned JSON codec."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.state import (
    HISTORY_LIMIT,
    STATE_VERSION,
    BreachClocks,
    DecisionRecord,
    MetricRecord,
    Phase,
    RolloutState,
    StateError,
    compact,
    decode_state,
    encode_state,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

# tz-aware UTC with microseconds, the precision the annotation keeps.
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
maybe_ts = st.none() | timestamps
numbers = st.none() | st.floats(allow_nan=False)
small_text = st.text(max_size=20)

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
    step=st.integers(0, 20),
    decision=small_text,
    reason=small_text,
    metrics=st.lists(metric_records, max_size=3).map(tuple),
    by=small_text,
)
states = st.builds(
    RolloutState,
    phase=st.sampled_from(Phase),
    target=small_text,
    spec_hash=st.text(alphabet="0123456789abcdef", max_size=16),
    step=st.integers(0, 50),
    replicas=st.none() | st.integers(1, 1000),
    shared_selector=st.dictionaries(small_text, small_text, max_size=3),
    attempt=st.integers(1, 10),
    started_at=maybe_ts,
    phase_since=maybe_ts,
    step_reached_at=maybe_ts,
    holding_since=maybe_ts,
    promoted_step=st.none() | st.integers(0, 50),
    paused_from=st.none() | st.sampled_from(Phase),
    flipped_at=maybe_ts,
    bake_started_at=maybe_ts,
    scaled_down_at=maybe_ts,
    finished_at=maybe_ts,
    failed_in=st.none() | st.sampled_from(Phase),
    message=st.text(max_size=40),
    last_command=st.none() | small_text,
    writer=st.none() | small_text,
    breach=st.none()
    | st.builds(
        BreachClocks,
        attempt=st.integers(1, 10),
        step=st.integers(0, 50),
        since=st.dictionaries(small_text, timestamps, max_size=3),
    ),
    history=st.lists(decision_records, max_size=HISTORY_LIMIT + 3).map(tuple),
)


@settings(max_examples=150)
@given(states)
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
    for ts in (decoded.started_at, decoded.finished_at, *(r.at for r in decoded.history)):
        assert ts is None or ts.tzinfo == UTC
    assert encode_state(decoded) == text  # a fixed point: re-encoding changes nothing


def test_encoding_is_compact_versioned_json_with_camel_keys() -> None:
    state = RolloutState(
        Phase.HOLDING,
        "abc",
        step=2,
        shared_selector={"app": "web"},
        started_at=T0 + timedelta(microseconds=5),
        history=(
            DecisionRecord(
                T0, "progressing", 1, "promote", "all-pass", (MetricRecord("e", "pass"),)
            ),
        ),
    )
    text = encode_state(state)
    assert " " not in text
    data = json.loads(text)
    assert data["v"] == STATE_VERSION
    assert data["phase"] == "holding"
    assert data["sharedSelector"] == {"app": "web"}
    assert data["startedAt"] == "2026-11-27T12:00:00.000005Z"
    assert data["history"][0]["at"] == "2026-11-27T12:00:00Z"
    assert data["history"][0]["metrics"][0]["name"] == "e"
    assert data["pausedFrom"] is None and data["stepReachedAt"] is None


def test_other_timezones_are_stored_as_utc() -> None:
    plus_two = datetime(2026, 11, 27, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    text = encode_state(RolloutState(Phase.PENDING, "t", started_at=plus_two))
    assert json.loads(text)["startedAt"] == "2026-11-27T12:00:00Z"
    decoded = decode_state(text).started_at
    assert decoded == plus_two and decoded is not None and decoded.tzinfo == UTC


def test_naive_timestamps_mean_utc_both_ways() -> None:
    naive = datetime(2026, 11, 27, 12, 0)
    text = encode_state(RolloutState(Phase.PENDING, "t", started_at=naive))
    assert json.loads(text)["startedAt"] == "2026-11-27T12:00:00Z"  # not shifted by local time
    raw = '{"v":1,"phase":"pending","target":"t","startedAt":"2026-11-27T12:00:00"}'
    assert decode_state(raw).started_at == T0


def test_with_record_bounds_the_history() -> None:
    state = RolloutState(Phase.PROGRESSING, "t")
    for i in range(HISTORY_LIMIT + 7):
        rec = DecisionRecord(T0 + timedelta(seconds=i), "progressing", i, "wait", f"r{i}")
        state = state.with_record(rec, step=i)
    assert len(state.history) == HISTORY_LIMIT
    assert [r.step for r in state.history] == list(range(7, HISTORY_LIMIT + 7))
    assert state.step == HISTORY_LIMIT + 6
    assert decode_state(encode_state(state)) == state


def test_with_record_applies_changes_and_keeps_the_original() -> None:
    before = RolloutState(Phase.PROGRESSING, "t")
    rec = DecisionRecord(T0, "progressing", 0, "pause", "manual gate")
    after = before.with_record(rec, phase=Phase.PAUSED, paused_from=Phase.PROGRESSING)
    assert (after.phase, after.paused_from, after.history) == (
        Phase.PAUSED,
        Phase.PROGRESSING,
        (rec,),
    )
    assert before.history == () and before.phase is Phase.PROGRESSING


def test_newer_version_is_refused_naming_both_versions() -> None:
    with pytest.raises(StateError) as info:
        decode_state('{"v":7,"phase":"some-future-phase","target":"t"}')
    assert str(info.value) == (
        f"state was written by a newer ptc (state version 7; this ptc reads up to {STATE_VERSION})"
        ": upgrade ptc, or remove the ptc.dev/state annotation to start over"
    )


def test_unknown_keys_of_the_same_version_are_ignored() -> None:
    assert decode_state('{"v":1,"phase":"pending","target":"t","later":1}') == RolloutState(
        Phase.PENDING, "t"
    )


def test_failed_in_round_trips_and_a_state_without_it_still_decodes() -> None:
    failed = RolloutState(Phase.FAILED, "t", failed_in=Phase.PREFLIGHT, attempt=2)
    text = encode_state(failed)
    assert json.loads(text)["failedIn"] == "preflight"
    assert decode_state(text) == failed
    assert decode_state(text).failed_in is Phase.PREFLIGHT  # the enum, not an equal string
    # An annotation written before `failedIn` existed: a failure of unknown kind (None), which
    # `retry` treats like any failure (cooldown, attempts).
    old = (
        '{"v":1,"phase":"failed","target":"t","attempt":2,'
        '"finishedAt":"2026-11-27T12:00:00Z","message":"preflight failed: x"}'
    )
    decoded = decode_state(old)
    assert decoded.phase is Phase.FAILED and decoded.failed_in is None
    assert decoded.attempt == 2 and decoded.finished_at == T0


OK = '"v":1,"phase":"pending","target":"t"'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "state annotation is not JSON: Expecting value at line 1 column 1"),
        (
            '{"v":1,',
            "state annotation is not JSON: Expecting property name enclosed in double "
            "quotes at line 1 column 8",
        ),
        ("[1]", "state annotation is not a JSON object: '[1]'"),
        (
            "{}",
            "state annotation has no valid version field 'v' (got None; expected an integer "
            "from 1 to 1)",
        ),
        (
            '{"v":"1"}',
            "state annotation has no valid version field 'v' (got '1'; expected an "
            "integer from 1 to 1)",
        ),
        (
            '{"v":true}',
            "state annotation has no valid version field 'v' (got True; expected an "
            "integer from 1 to 1)",
        ),
        (
            '{"v":0}',
            "state annotation has no valid version field 'v' (got 0; expected an "
            "integer from 1 to 1)",
        ),
        ('{"v":1}', "state annotation lacks required field(s): phase, target"),
        (
            '{"v":1,"phase":"nope","target":"t"}',
            "state field 'phase': unknown phase 'nope' "
            "(known: pending, preflight, progressing, holding, paused, flipping, baking, "
            "scaling-down, completed, rolling-back, rolled-back, failed)",
        ),
        (
            '{"v":1,"phase":null,"target":"t"}',
            "state field 'phase': unknown phase None (known: "
            "pending, preflight, progressing, holding, paused, flipping, baking, scaling-down, "
            "completed, rolling-back, rolled-back, failed)",
        ),
        (
            "{" + OK + ',"failedIn":"lunch"}',
            "state field 'failedIn': unknown phase 'lunch' (known: "
            "pending, preflight, progressing, holding, paused, flipping, baking, scaling-down, "
            "completed, rolling-back, rolled-back, failed)",
        ),
        ("{" + OK + ',"step":"2"}', "state field 'step': expected an integer, got '2'"),
        ("{" + OK + ',"step":null}', "state field 'step': expected an integer, got None"),
        ("{" + OK + ',"attempt":1.5}', "state field 'attempt': expected an integer, got 1.5"),
        ("{" + OK + ',"replicas":true}', "state field 'replicas': expected an integer, got True"),
        ('{"v":1,"phase":"pending","target":5}', "state field 'target': expected a string, got 5"),
        ("{" + OK + ',"writer":[]}', "state field 'writer': expected a string, got []"),
        (
            "{" + OK + ',"startedAt":"yesterday"}',
            "state field 'startedAt': bad timestamp 'yesterday'",
        ),
        (
            "{" + OK + ',"flippedAt":5}',
            "state field 'flippedAt': expected a timestamp string, got 5",
        ),
        (
            "{" + OK + ',"sharedSelector":[1]}',
            "state field 'sharedSelector': expected an object, got [1]",
        ),
        (
            "{" + OK + ',"sharedSelector":{"app":1}}',
            "state field 'sharedSelector.app': expected a string, got 1",
        ),
        ("{" + OK + ',"history":5}', "state field 'history': expected a list, got 5"),
        ("{" + OK + ',"history":[5]}', "state field 'history[0]': expected an object, got 5"),
        ("{" + OK + ',"history":[{}]}', "state field 'history[0]': lacks 'at'"),
        (
            "{" + OK + ',"history":[{"at":"2026-01-01T00:00:00Z","phase":"p","step":"x",'
            '"decision":"d","reason":"r"}]}',
            "state field 'history[0].step': expected an integer, got 'x'",
        ),
        (
            "{" + OK + ',"history":[{"at":null,"phase":"p","step":1,"decision":"d","reason":"r"}]}',
            "state field 'history[0].at': expected a timestamp string, got None",
        ),
        (
            "{" + OK + ',"history":[{"at":"2026-01-01T00:00:00Z","phase":"p","step":1,'
            '"decision":"d","reason":"r","metrics":[{"name":"m"}]}]}',
            "state field 'history[0].metrics[0]': lacks 'verdict'",
        ),
        (
            "{" + OK + ',"history":[{"at":"2026-01-01T00:00:00Z","phase":"p","step":1,'
            '"decision":"d","reason":"r","metrics":[{"name":"m","verdict":"pass","value":"1"}]}]}',
            "state field 'history[0].metrics[0].value': expected a number, got '1'",
        ),
    ],
)
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
    ],
    ids=["deep", "long-number"],
)
def test_hostile_json_in_the_annotation_is_a_state_error_not_a_crash(text: str) -> None:
    with pytest.raises(StateError):
        decode_state(text)
