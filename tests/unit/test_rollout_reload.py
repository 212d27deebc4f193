"""A reloaded spec: applied at once, or deferred while a rollout of another target runs.

One rule (`controller.core.rollout.reload`), used by `decide()` and by the reconciler alike.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.rollout import (
    SpecChange,
    Wait,
    decide,
    spec_change,
    target_hash,
    waits_for_rollout_in_flight,
)
from controller.core.state import Phase, RolloutState
from tests.unit.rollout_model import T0, Cluster, make_spec
from tests.unit.states import state as make_state

SPEC = make_spec()
V3 = make_spec(canary={"deployment": "zai-proxy-v3", "version": "v3"})
TWEAK = make_spec(maxSurge=2)  # thresholds, steps and timings: the same target


def state(phase: Phase, spec: Any = SPEC) -> RolloutState:
    return make_state(phase, target_hash(spec), rollout=spec.name, step=1)


IN_FLIGHT = [p for p in Phase if not p.terminal]
ENDED = [p for p in Phase if p.terminal]


@pytest.mark.parametrize(
    ("new", "current_state", "expected"),
    [
        (SPEC, state(Phase.HOLDING), SpecChange.UNCHANGED),
        (TWEAK, state(Phase.HOLDING), SpecChange.APPLIED),  # a tweak applies mid-rollout
        (V3, state(Phase.HOLDING), SpecChange.DEFERRED),  # a new canary waits
        (V3, state(Phase.PAUSED), SpecChange.DEFERRED),  # paused is still in flight
        (V3, state(Phase.PENDING), SpecChange.DEFERRED),
        (V3, state(Phase.COMPLETED), SpecChange.APPLIED),  # the last one ended: start
        (V3, state(Phase.ROLLED_BACK), SpecChange.APPLIED),
        (V3, state(Phase.FAILED), SpecChange.APPLIED),
        (V3, None, SpecChange.APPLIED),  # nothing ever ran on the Service
        # The state in flight is already the new target's (e.g. a reload back and forth):
        # nothing to wait for.
        (V3, state(Phase.HOLDING, V3), SpecChange.APPLIED),
    ],
    ids=[
        "same",
        "tweak",
        "new-canary",
        "paused",
        "pending",
        "completed",
        "rolled-back",
        "failed",
        "no-state",
        "state-is-new-target",
    ],
)
def test_spec_change(new: Any, current_state: RolloutState | None, expected: SpecChange) -> None:
    assert spec_change(SPEC, new, current_state) is expected


def test_a_tweak_of_a_spec_that_waits_itself_is_applied_not_deferred() -> None:
    """After a restart with config V3 while SPEC's rollout runs, a V3 tweak is no new target."""
    assert (
        spec_change(V3, make_spec(canary=V3.canary.model_dump(), maxSurge=2), state(Phase.HOLDING))
        is SpecChange.APPLIED
    )


@given(st.sampled_from(list(Phase)), st.booleans())
def test_decide_waits_exactly_when_the_rule_says_a_new_target_waits(
    phase: Phase, new_target: bool
) -> None:
    """decide() and the reconciler's reload agree: one rule, no second copy to drift."""
    spec = V3 if new_target else SPEC
    current = state(phase)
    decision = decide(spec, current, Cluster().observed(T0), None, T0)
    waits = waits_for_rollout_in_flight(current, target_hash(spec))
    assert waits == (new_target and phase in IN_FLIGHT)
    assert waits == (spec_change(SPEC, spec, current) is SpecChange.DEFERRED)
    if waits:
        assert isinstance(decision.action, Wait) and decision.state is current
        assert "in flight" in decision.reason
    elif new_target:
        assert decision.state.revision == target_hash(V3)  # a new rollout started
        assert decision.state.phase is Phase.PREFLIGHT
