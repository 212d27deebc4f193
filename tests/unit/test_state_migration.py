"""State v1 -> v2: every v1 state ptc wrote decodes into the state this ptc writes in its place.

`tests/data/state_v1_walks.json.gz` holds 3000 decisions of seeded random walks
(`tests.unit.state_walk`) as the last ptc that wrote state v1 took them, each with the state it
encoded. Walking again here must decide the same (action, reason, Event) at every step, and each
saved v1 state must decode to the state v2 written at that step: the migration is exact on
every shape those walks reach, and `decide()` did not change.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.rollout import target_hash
from controller.core.state import (
    Bake,
    End,
    Hold,
    Holding,
    HoldKind,
    Identity,
    Pause,
    Phase,
    Progress,
    Retention,
    RolloutState,
    StateError,
    decode_state,
    encode_state,
    format_timestamp,
)
from tests.unit.rollout_model import T0
from tests.unit.state_walk import SEEDS, walk
from tests.unit.test_reconciler_echo import SPEC, world

WALKS = Path(__file__).parent.parent / "data" / "state_v1_walks.json.gz"


@pytest.fixture(scope="module")
def saved() -> dict[str, list[dict[str, str]]]:
    data: dict[str, list[dict[str, str]]] = json.loads(gzip.decompress(WALKS.read_bytes()))
    return data


def _as_written(state: RolloutState) -> RolloutState:
    # What the annotation keeps of the state, with the hash marked as this ptc's own.
    decoded = decode_state(encode_state(state))
    return replace(decoded, identity=replace(decoded.identity, legacy_spec_hash=False))


def _migrated(text: str) -> RolloutState:
    state = decode_state(text)
    assert json.loads(text)["v"] == 1
    if state.identity.spec_hash:
        assert state.identity.legacy_spec_hash  # v1 hashes may be of an older canonical form
    return replace(state, identity=replace(state.identity, legacy_spec_hash=False))


@pytest.mark.parametrize("seed", SEEDS)
def test_a_v1_walk_decides_the_same_and_its_states_migrate_exactly(
    seed: int, saved: dict[str, list[dict[str, str]]]
) -> None:
    before = saved[str(seed)]
    steps = list(walk(seed))
    assert len(steps) == len(before)
    for i, (now, then) in enumerate(zip(steps, before, strict=True)):
        where = f"walk {seed} step {i}"
        assert (now.action, now.reason, now.event) == (
            then["action"],
            then["reason"],
            then["event"],
        ), where
        assert _migrated(then["state"]) == _as_written(now.decision.state), where


def test_the_walks_reach_every_phase_and_record(saved: dict[str, list[dict[str, str]]]) -> None:
    """The golden walks are worth their bytes: they cover what the migration maps."""
    states = [decode_state(s["state"]) for steps in saved.values() for s in steps]
    assert {s.phase.value for s in states} >= {
        "preflight", "progressing", "holding", "paused", "flipping", "baking", "scaling-down",
        "completed", "rolling-back", "rolled-back", "failed",
    }  # fmt: skip
    for record in ("hold", "holding", "bake", "retention", "pause", "end"):
        assert any(getattr(s, record) is not None for s in states), record
    assert any(s.pause is not None and s.holding is not None for s in states)
    assert any(s.end is not None and s.end.failed_in is not None for s in states)


# -- random v1 states ---------------------------------------------------------------------------

ts = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
maybe = st.none() | ts
STEPPING = (Phase.PROGRESSING, Phase.HOLDING)


@st.composite
def v1_states(draw: st.DrawFn) -> dict[str, Any]:
    """A v1 annotation's fields as ptc wrote them: every key, stale ones included."""
    return {
        "phase": draw(st.sampled_from(Phase)),
        "target": draw(st.text(max_size=16)),
        "rollout": draw(st.text(max_size=8)),
        "stable": "web",
        "canary": "web-v2",
        "steps": draw(st.integers(0, 5)),
        "specHash": draw(st.sampled_from(["", "0123456789abcdef"])),
        "step": draw(st.integers(0, 5)),
        "replicas": draw(st.none() | st.integers(1, 9)),
        "sharedSelector": draw(st.dictionaries(st.text(max_size=3), st.text(max_size=3))),
        "attempt": draw(st.integers(1, 3)),
        "startedAt": draw(maybe),
        "phaseSince": draw(maybe),
        "stepReachedAt": draw(maybe),
        "holdingSince": draw(maybe),
        "holdKind": draw(st.none() | st.sampled_from(["analysis", "capacity", "traffic-share"])),
        "weight": draw(st.sampled_from([0.0, 25.0, 100])),
        "holdUntil": draw(maybe),
        "promotedStep": draw(st.none() | st.integers(0, 5)),
        "pausedFrom": draw(st.none() | st.sampled_from(Phase)),
        "flippedAt": draw(maybe),
        "bakeStartedAt": draw(maybe),
        "scaledDownAt": draw(maybe),
        "stableUid": draw(st.none() | st.just("uid-1")),
        "finishedAt": draw(maybe),
        "failedIn": draw(st.none() | st.sampled_from(Phase)),
        "message": draw(st.text(max_size=10)),
        "lastCommand": draw(st.none() | st.just("cmd-1")),
        "writer": draw(st.none() | st.just("ptc-0")),
    }


def _v1_text(fields: dict[str, Any]) -> str:
    def plain(value: Any) -> Any:
        return format_timestamp(value) if isinstance(value, datetime) else value

    return json.dumps({"v": 1, **{k: plain(v) for k, v in fields.items()}})


def expected_v2(v1: dict[str, Any]) -> RolloutState:
    """The v2 state a v1 state means, rule by rule (independent of the migration's code)."""
    phase: Phase = v1["phase"]
    paused_from = v1["pausedFrom"]
    pause = None
    if phase is Phase.PAUSED:
        ok = paused_from is not None and paused_from is not Phase.PAUSED
        pause = Pause(paused_from if ok and not paused_from.terminal else Phase.PROGRESSING)
    at = pause.from_phase if pause else phase  # the phase whose records count
    kind = v1["holdKind"]
    hold = holding = bake = retention = end = None
    if at in STEPPING and v1["stepReachedAt"]:
        hold = Hold(v1["stepReachedAt"], v1["holdUntil"])
    if at in (*STEPPING, Phase.FLIPPING, Phase.BAKING) and v1["holdingSince"]:
        holding = Holding(v1["holdingSince"], HoldKind(kind) if kind else None)
    if at is Phase.BAKING and (v1["flippedAt"] or v1["bakeStartedAt"]):
        until = v1["holdUntil"] if v1["bakeStartedAt"] else None
        bake = Bake(v1["flippedAt"], v1["bakeStartedAt"], until)
    if at is Phase.SCALING_DOWN and v1["scaledDownAt"]:
        retention = Retention(v1["scaledDownAt"], v1["holdUntil"], v1["stableUid"])
    if phase.terminal and v1["finishedAt"]:
        end = End(v1["finishedAt"], v1["failedIn"] if phase is Phase.FAILED else None)
    return RolloutState(
        Identity(
            v1["target"],
            v1["rollout"],
            v1["stable"],
            v1["canary"],
            v1["steps"],
            v1["specHash"],
            legacy_spec_hash=bool(v1["specHash"]),
        ),
        Progress(
            phase,
            v1["step"],
            v1["attempt"],
            v1["weight"],
            v1["replicas"],
            v1["sharedSelector"],
            v1["startedAt"],
            v1["phaseSince"],
            v1["promotedStep"],
        ),
        hold=hold,
        holding=holding,
        bake=bake,
        retention=retention,
        pause=pause,
        end=end,
        message=v1["message"],
        last_command=v1["lastCommand"],
        writer=v1["writer"],
    )


@settings(max_examples=300)
@given(v1_states())
def test_any_v1_state_decodes_into_the_v2_state_it_means(v1: dict[str, Any]) -> None:
    decoded = decode_state(_v1_text(v1))
    assert decoded == expected_v2(v1)
    assert decode_state(encode_state(decoded)) == decoded  # and is written back as v2


# -- v1 annotations as older ptc wrote them -----------------------------------------------------

# A state v1 written before holdKind, stableUid, failedIn, writer and breach existed: paused
# while baking, one record with readings.
OLD_PAUSED_BAKING = (
    '{"v":1,"attempt":1,"bakeStartedAt":"2026-11-27T12:10:00Z","canary":"web-v2",'
    '"finishedAt":null,"flippedAt":"2026-11-27T12:09:30Z","history":[{"at":'
    '"2026-11-27T12:11:00Z","by":"alice","decision":"paused","metrics":[{"detail":"ok",'
    '"name":"err","stable":null,"threshold":"<= 0.05","value":0.01,"verdict":"pass"}],'
    '"phase":"baking","reason":"paused by alice","step":3}],"holdUntil":"2026-11-27T12:15:00Z",'
    '"holdingSince":null,"lastCommand":"pause-1","message":"paused by alice","pausedFrom":'
    '"baking","phase":"paused","phaseSince":"2026-11-27T12:11:00Z","promotedStep":null,'
    '"replicas":4,"rollout":"web","scaledDownAt":null,"sharedSelector":{"app":"web"},'
    '"specHash":"","stable":"web","startedAt":"2026-11-27T12:00:00Z","step":3,'
    '"stepReachedAt":null,"steps":3,"target":"abc","weight":100.0}'
)


def test_an_old_paused_bake_migrates_with_its_bake_and_its_readings() -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    s = decode_state(OLD_PAUSED_BAKING)
    assert s.pause == Pause(Phase.BAKING)
    assert s.bake == Bake(
        at + timedelta(minutes=9, seconds=30),
        at + timedelta(minutes=10),
        at + timedelta(minutes=15),
    )
    assert (s.hold, s.holding, s.retention, s.end) == (None, None, None, None)
    assert s.identity == Identity("abc", "web", "web", "web-v2", 3, "")  # no hash: not legacy
    assert s.progress.replicas == 4 and s.progress.weight == 100.0 and s.step == 3
    assert s.history[0].metrics[0].value == 0.01 and s.history[0].by == "alice"
    assert s.last_command == "pause-1" and s.writer is None and s.breach is None


def test_a_v1_failure_recorded_before_failed_in_existed_is_of_unknown_kind() -> None:
    old = (
        '{"v":1,"phase":"failed","target":"t","attempt":2,'
        '"finishedAt":"2026-11-27T12:00:00Z","message":"preflight failed: x"}'
    )
    decoded = decode_state(old)
    assert decoded.end == End(datetime(2026, 11, 27, 12, 0, tzinfo=UTC), failed_in=None)
    assert decoded.attempt == 2


V1 = '"v":1,"phase":"pending","target":"t"'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"v":1}', "state field 'phase': missing"),
        (
            '{"v":1,"phase":"pending","target":5}',
            "state field 'target': Input should be a valid string, got 5",
        ),
        (
            "{" + V1 + ',"step":null}',
            "state field 'step': Input should be a valid integer, got None",
        ),
        (
            "{" + V1 + ',"flippedAt":5}',
            "state field 'flippedAt': expected a timestamp string, got 5",
        ),
        (
            "{" + V1 + ',"failedIn":"lunch"}',
            "state field 'failedIn': Input should be 'pending', 'preflight', 'progressing', "
            "'holding', 'paused', 'flipping', 'baking', 'scaling-down', 'completed', "
            "'rolling-back', 'rolled-back' or 'failed', got 'lunch'",
        ),
    ],
)
def test_a_malformed_v1_state_names_the_field(text: str, message: str) -> None:
    with pytest.raises(StateError) as info:
        decode_state(text)
    assert str(info.value) == message


# -- a v1 state on a Service, read by this ptc's reconciler --------------------------------------


async def test_a_rollout_in_flight_under_v1_resumes_its_step_and_is_written_back_as_v2() -> None:
    """Upgrading ptc mid-rollout: the step goes on where the v1 state left it; the next write
    is v2 and keeps the v1 decisions."""
    v1 = json.dumps(
        {
            "v": 1,
            "phase": "progressing",
            "target": target_hash(SPEC),
            "rollout": SPEC.name,
            "stable": SPEC.stable.deployment,
            "canary": SPEC.canary.deployment,
            "steps": len(SPEC.steps),
            "specHash": "0123456789abcdef",
            "step": 0,
            "replicas": 4,
            "sharedSelector": {"app": "zai-proxy"},
            "attempt": 2,
            "startedAt": "2026-11-27T11:50:00Z",
            "phaseSince": "2026-11-27T11:50:00Z",
            "stepReachedAt": None,
            "holdUntil": None,
            "pausedFrom": None,
            "writer": "ptc-old",
            "history": [
                {"at": "2026-11-27T11:50:00Z", "phase": "pending", "step": 0,
                 "decision": "started", "reason": "started, attempt 2", "metrics": [],
                 "by": "ptc"},
            ],
        }
    )  # fmt: skip
    async with world(v1, stable=3, canary=1) as w:  # the cluster is at step 1's split
        await w.reconciler.reconcile_once()  # the takeover's claim: the state as it was, v2
        raw = w.cluster.objects["services"]["zai-proxy"]["metadata"]["annotations"]
        assert json.loads(raw["ptc.dev/state"])["v"] == 2
        assert w.state().hold is None and w.state().writer == "ptc-test"
        await w.reconciler.reconcile_once()
        s = w.state()
        assert (s.phase, s.step, s.attempt) == (Phase.PROGRESSING, 0, 2)
        assert s.hold == Hold(T0, T0 + SPEC.steps[0].hold)  # reached now, on the v1 split
        assert s.identity.spec_hash == "0123456789abcdef" and s.identity.legacy_spec_hash
        assert s.history[0].decision == "started"
        assert s.writer == "ptc-test"
