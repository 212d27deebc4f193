"""Surge shifting: stable stays at N through the steps, canary grows beside it, no serving pod
is terminated before the flip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.config.model import Rollout
from controller.core.plan import (
    Limits,
    Split,
    place_step,
    place_surge,
    plan_rollout,
    surge_shortfall,
)
from tests.unit.test_plan import rollout as plan_rollout_spec


def rollout(**overrides: object) -> Rollout:
    return plan_rollout_spec(**{"shifting": "surge", "maxSurge": "100%", **overrides})


# N, surge, weight -> canary / stable (achieved %). Stable is always N.
SURGE_PLACEMENTS = [
    (4, 4, 25, Split(1, 4)),  # 4*25/75 = 1.33 -> 1: 20% (2 would be 33%)
    (4, 4, 50, Split(4, 4)),  # 50% needs k = N
    (4, 4, 75, Split(4, 4)),  # beyond 50%: the closest is the full canary beside N (50%)
    (4, 2, 50, Split(2, 4)),  # surge caps k: 33%
    (1, 1, 10, Split(1, 1)),  # the seed's N=1: 50% is the only weight
    (10, 10, 10, Split(1, 10)),  # 1.11 -> 1: 9.1%
    (10, 10, 20, Split(3, 10)),  # 2.5 rounds half up to 3: 23.1% (3.1 points) beats 16.7% (3.3)
    (3, 3, 40, Split(2, 3)),  # 3*40/60 = 2: exactly 40%
]


@pytest.mark.parametrize(("n", "surge", "weight", "expected"), SURGE_PLACEMENTS)
def test_surge_placement_table(n: int, surge: int, weight: float, expected: Split) -> None:
    assert place_surge(weight, Limits(n, surge, 0), tolerance=10.0, most=n).split == expected


def test_surge_placement_needs_a_surge_pod() -> None:
    placement = place_surge(25, Limits(4, 0, 0), tolerance=10.0, most=4)
    assert placement.split is None and not placement.within_tolerance


def test_place_step_follows_the_rollout_mode() -> None:
    limits = Limits(4, 4, 0)
    assert place_step(rollout(), 50, limits).split == Split(4, 4)
    assert place_step(rollout(shifting="standard"), 50, limits).split == Split(2, 2)


def test_surge_plan_terminates_no_serving_pod_and_standard_does() -> None:
    surge = plan_rollout(rollout(steps=[{"weight": w} for w in (25, 50, 75)]), 4)
    standard = plan_rollout(
        rollout(shifting="standard", steps=[{"weight": w} for w in (25, 50, 75)]), 4
    )
    assert [r.split for r in surge.steps] == [Split(1, 4), Split(4, 4), Split(4, 4), Split(4, 4)]
    assert [r.serving_terminated for r in surge.steps] == [0, 0, 0, 0]
    assert surge.serving_terminated == 0
    assert surge.feasible
    # Standard: each step lowers stable by one pod while the Service routes to it.
    assert [r.split for r in standard.steps] == [
        Split(1, 3),
        Split(2, 2),
        Split(3, 1),
        Split(4, 1),
    ]
    assert [r.serving_terminated for r in standard.steps] == [1, 1, 1, 0]
    # The price of surge: up to 2N pods.
    assert max(r.peak_pods or 0 for r in surge.steps) == 8
    assert max(r.peak_pods or 0 for r in standard.steps) == 5


def test_surge_plan_is_infeasible_when_the_flip_has_no_room() -> None:
    plan = plan_rollout(rollout(maxSurge=1), 4)
    assert not plan.feasible
    flip = plan.steps[-1]
    assert flip.label == "flip"
    assert flip.note.startswith("infeasible: shifting: surge needs maxSurge >= 4")
    assert surge_shortfall(rollout(maxSurge=1), Limits.for_rollout(rollout(maxSurge=1), 4))
    # The seed's N=1 works with the default maxSurge (25% of 1 rounds up to 1 pod).
    seed = rollout(maxSurge="25%")
    assert surge_shortfall(seed, Limits.for_rollout(seed, 1)) is None
    assert plan_rollout(seed, 1).feasible


def test_flip_canary_replicas_bounds_the_surge_canary() -> None:
    # flip.canaryReplicas = 2: the canary never grows past its full size during the steps.
    r = rollout(flip={"canaryReplicas": 2}, maxSurge="100%", steps=[{"weight": 50}])
    plan = plan_rollout(r, 4)
    assert plan.steps[0].split == Split(2, 4)
    assert plan.steps[-1].split == Split(2, 4)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 30),
    surge=st.integers(1, 40),
    weight=st.floats(min_value=0.5, max_value=100, allow_nan=False),
)
def test_surge_placement_properties(n: int, surge: int, weight: float) -> None:
    placement = place_surge(weight, Limits(n, surge, 0), tolerance=10.0, most=n)
    split = placement.split
    assert split is not None
    # Stable keeps all N; the canary stays within the surge budget and its full size.
    assert split.stable == n
    assert 1 <= split.canary <= min(surge, n)
    # The closest of every allowed canary size.
    best = min(abs(100 * k / (n + k) - weight) for k in range(1, min(surge, n) + 1))
    assert abs(split.weight - weight) <= best + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 12),
    weights=st.lists(
        st.floats(min_value=1, max_value=100, allow_nan=False), min_size=1, max_size=5
    ),
)
def test_surge_plans_never_stop_a_serving_pod(n: int, weights: list[float]) -> None:
    r = rollout(steps=[{"weight": w} for w in sorted(weights)])
    plan = plan_rollout(r, n)
    assert plan.feasible
    assert plan.serving_terminated == 0
    assert all(row.split is not None and row.split.stable == n for row in plan.steps)
