"""What a reloaded spec does to a rollout (pure): the one rule for a new rollout target.

A reload that keeps the target (thresholds, steps, timings) applies at once, from the next
evaluation on. A new target (another stable, canary or version label) is a new rollout: while a
rollout of another target is in flight it waits, and the one in flight finishes (or is aborted)
on the spec it started with. `decide()` applies the same rule to a state it finds on the Service
(after a restart with a new config there is no old spec to keep), and the reconciler keeps the
old spec while `spec_change` says DEFERRED.
"""

from __future__ import annotations

from enum import StrEnum

from controller.core.config.model import Rollout
from controller.core.rollout.context import target_hash
from controller.core.state import RolloutState

WAITS_REASON = (
    "the config names a different stable/canary than the rollout in flight; it finishes (or is "
    "aborted) on the spec it started with"
)


class SpecChange(StrEnum):
    """What a reloaded spec does."""

    UNCHANGED = "unchanged"
    APPLIED = "applied"  # in force from now on
    DEFERRED = "deferred"  # in force once the rollout in flight has ended


def waits_for_rollout_in_flight(state: RolloutState | None, target: str) -> bool:
    """Whether a rollout of `target` must wait: one of another target is in flight."""
    return state is not None and state.revision != target and not state.phase.terminal


def spec_change(current: Rollout, new: Rollout, state: RolloutState | None) -> SpecChange:
    """What reloading `new` over `current` does, given the rollout's persisted `state`."""
    if new == current:
        return SpecChange.UNCHANGED
    target = target_hash(new)
    # Same target as the spec in force: a tweak, never held back (whatever that spec waits on).
    if target != target_hash(current) and waits_for_rollout_in_flight(state, target):
        return SpecChange.DEFERRED
    return SpecChange.APPLIED
