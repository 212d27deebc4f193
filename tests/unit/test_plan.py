"""Planner: weight -> replica counts, and the order of moves between splits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.config.model import Rollout
from controller.core.plan import (
    Blocked,
    Counts,
    DeploymentRole,
    Limits,
    Move,
    Split,
    achievable_splits,
    moves_between,
    next_move,
    place,
    plan_rollout,
    resolve_surge,
    resolve_unavailable,
    round_half_up,
)


def rollout(**overrides: object) -> Rollout:
    data: dict[str, object] = {
        "name": "web",
        "service": "web",
        "stable": {"deployment": "web"},
        "canary": {"deployment": "web-v2", "version": "v2"},
        "steps": [{"weight": 25, "hold": "1m"}, {"weight": 50, "hold": "2m"}],
    }
    data.update(overrides)
    return Rollout.model_validate(data)


# Each case: N, surge, unavailable, weight -> canary / stable (achieved %). One sentence why.
PLACEMENTS = [
    # The examples.
    (4, 0, 1, 25, Split(1, 3)),  # 25% exactly
    (10, 0, 1, 41, Split(4, 6)),  # 4.1 rounds to 4: 40%
    (3, 0, 1, 50, Split(2, 1)),  # 1.5 rounds half up: 66.7%, no surge to do better
    # With a surge budget, a miss beyond tolerance uses extra pods.
    (3, 1, 0, 50, Split(2, 2)),  # 66.7% misses by 16.7 points: 2/2 on 4 pods is exact
    # N=1, the seed's case: only surge gives both versions.
    (1, 1, 0, 25, Split(1, 1)),  # 50% is the only weight strictly between 0 and 100
    (1, 1, 0, 75, Split(1, 1)),
    # Clamps: at least one canary for a small weight, at least one stable below 100.
    (10, 0, 1, 1, Split(1, 9)),  # 0.1 rounds to 0, clamped to 1 canary: 10%
    (4, 0, 1, 95, Split(3, 1)),  # 3.8 rounds to 4, clamped to 3 so stable keeps a pod
    (4, 1, 0, 100, Split(4, 0)),  # 100%: all canary
    (2, 1, 0, 10, Split(1, 2)),  # 1/1 = 50% misses by 40: 1 canary beside 2 stable is 33%
]


@pytest.mark.parametrize(("n", "surge", "unavailable", "weight", "expected"), PLACEMENTS)
def test_placement_table(
    n: int, surge: int, unavailable: int, weight: float, expected: Split
) -> None:
    chosen = place(weight, Limits(n, surge, unavailable), tolerance=10.0)
    assert chosen.split == expected


def test_tolerance_boundary_is_inclusive() -> None:
    # 3/2 = 60% misses 50% by exactly 10 points: within a 10-point tolerance, so N pods suffice.
    assert place(50, Limits(5, 2, 0), tolerance=10.0).split == Split(3, 2)
    # A tighter tolerance buys exactness with surge pods.
    assert place(50, Limits(5, 2, 0), tolerance=5.0).split == Split(3, 3)


def test_infeasible_without_surge_at_one_replica() -> None:
    placement = place(30, Limits(1, 0, 0), tolerance=10.0)
    assert placement.split is None
    assert not placement.within_tolerance


def test_round_half_up_differs_from_bankers_rounding() -> None:
    assert round_half_up(2.5) == 3
    assert round_half_up(1.5) == 2
    assert round_half_up(0.49) == 0


@pytest.mark.parametrize(
    ("value", "n", "surge", "unavailable"),
    [
        (0, 4, 0, 0),
        (2, 4, 2, 2),
        ("25%", 4, 1, 1),
        ("25%", 3, 1, 0),
        ("10%", 10, 1, 1),
        ("100%", 1, 1, 1),
    ],
)
def test_percentages_round_like_a_deployment(
    value: int | str, n: int, surge: int, unavailable: int
) -> None:
    assert resolve_surge(value, n) == surge  # up
    assert resolve_unavailable(value, n) == unavailable  # down


def test_moves_canary_up_first_then_stable_down() -> None:
    limits = Limits(4, 1, 0)
    moves, peak = moves_between(Split(0, 4), Split(2, 2), limits)
    assert moves == [
        Move(DeploymentRole.CANARY, 1),  # 5 pods: the surge
        Move(DeploymentRole.STABLE, 3),
        Move(DeploymentRole.CANARY, 2),
        Move(DeploymentRole.STABLE, 2),
    ]
    assert peak == 5


def test_moves_without_surge_go_down_first_within_unavailability() -> None:
    moves, peak = moves_between(Split(0, 4), Split(2, 2), Limits(4, 0, 1))
    assert moves == [
        Move(DeploymentRole.STABLE, 3),
        Move(DeploymentRole.CANARY, 1),
        Move(DeploymentRole.STABLE, 2),
        Move(DeploymentRole.CANARY, 2),
    ]
    assert peak == 4


def test_next_move_waits_for_started_pods_before_scaling_down() -> None:
    limits = Limits(4, 1, 0)
    counts = Counts(canary_spec=1, canary_ready=0, stable_spec=4, stable_ready=4)
    result = next_move(counts, Split(1, 3), limits)
    assert isinstance(result, Blocked) and result.waiting_for_pods


def test_next_move_reports_a_dead_end() -> None:
    result = next_move(Counts(0, 0, 4, 4), Split(2, 2), Limits(4, 0, 0))
    assert isinstance(result, Blocked) and not result.waiting_for_pods
    assert "within 4 pods" in result.reason


def test_next_move_none_when_settled() -> None:
    assert next_move(Counts(1, 1, 3, 3), Split(1, 3), Limits(4, 1, 0)) is None


def test_plan_rollout_rows_and_duration() -> None:
    plan = plan_rollout(rollout(replicas=4, maxSurge=1), 4)
    assert [(r.label, r.split) for r in plan.steps] == [
        ("step 1", Split(1, 3)),
        ("step 2", Split(2, 2)),
        ("flip", Split(4, 1)),  # canary full, one stable pod kept warm by the surge
    ]
    assert [r.peak_pods for r in plan.steps] == [5, 5, 5]
    assert plan.minimum_duration.total_seconds() == 60 + 120 + 300  # holds + default 5m bake
    assert plan.feasible


def test_plan_notes_approximation_and_infeasibility() -> None:
    approx = plan_rollout(rollout(maxSurge=1), 1)
    assert "approximated by 50.0%" in approx.steps[0].note
    dead = plan_rollout(rollout(maxSurge=0, maxUnavailable=1), 1)
    assert dead.steps[0].note.startswith("infeasible")
    assert not dead.feasible


def test_flip_without_surge_keeps_no_stable_warm() -> None:
    plan = plan_rollout(rollout(maxSurge=0, maxUnavailable=1), 4)
    assert plan.steps[-1].split == Split(4, 0)
    assert "no stable pod stays warm" in plan.steps[-1].note


# ---------------------------------------------------------------------------------------------
# Properties

limits_st = st.builds(
    lambda n, s, u: Limits(n, s, min(u, n - 1)),
    st.integers(1, 40),
    st.integers(0, 5),
    st.integers(0, 5),
)
weights = st.floats(min_value=0.5, max_value=100, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(limits=limits_st, weight=weights, tolerance=st.sampled_from([0.0, 5.0, 10.0, 25.0]))
def test_placement_properties(limits: Limits, weight: float, tolerance: float) -> None:
    placement = place(weight, limits, tolerance)
    options = achievable_splits(weight, limits)
    if placement.split is None:
        assert options == [] or weight >= 100
        return
    split = placement.split
    # Never above N + surge, never below N pods.
    assert limits.total <= split.total <= limits.cap
    if weight < 100:
        # Both versions present (when achievable at all).
        assert split.canary >= 1 and split.stable >= 1
        # Closest achievable: on N pods by the formula when within tolerance, else globally.
        error = abs(split.weight - weight)
        if split.total == limits.total and placement.within_tolerance:
            on_n = [s for s in options if s.total == limits.total]
            assert error <= min(abs(s.weight - weight) for s in on_n) + 1e-9
        else:
            assert error <= min(abs(s.weight - weight) for s in options) + 1e-9
        assert placement.within_tolerance == (error <= tolerance)
    else:
        assert split == Split(limits.total, 0)


@settings(max_examples=300, deadline=None)
@given(
    limits=limits_st.filter(lambda lim: lim.surge + lim.unavailable >= 1),
    data=st.data(),
)
def test_moves_respect_cap_and_floor(limits: Limits, data: st.DataObject) -> None:
    def split_st() -> st.SearchStrategy[Split]:
        return st.integers(limits.total, limits.cap).flatmap(
            lambda t: st.integers(0, t).map(lambda c: Split(c, t - c))
        )

    start, target = data.draw(split_st()), data.draw(split_st())
    moves, peak = moves_between(start, target, limits)
    canary, stable = start.canary, start.stable
    for move in moves:
        before_ready = canary + stable
        if move.role is DeploymentRole.CANARY:
            canary = move.replicas
        else:
            stable = move.replicas
        # Pods in moves_between become Ready at once, so Ready == spec here.
        assert canary + stable <= max(limits.cap, start.total)
        if canary + stable < before_ready:
            assert canary + stable >= min(limits.floor, before_ready)
    assert (canary, stable) == (target.canary, target.stable)
    assert peak <= max(limits.cap, start.total)
