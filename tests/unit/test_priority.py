"""The ordering policy for a behind controller (controller.core.priority), pure."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.priority import (
    GatePolicy,
    Urgency,
    admissible,
    evaluation_urgency,
    next_to_admit,
    reconcile_urgency,
)

POLICY = GatePolicy(capacity=4, routine_budget=3)


def test_a_rollback_outranks_a_command_which_outranks_routine_work() -> None:
    assert reconcile_urgency(rolling_back=True, command=True) is Urgency.ROLLBACK
    assert reconcile_urgency(rolling_back=False, command=True) is Urgency.COMMAND
    assert reconcile_urgency(rolling_back=False, command=False) is Urgency.ROUTINE
    assert evaluation_urgency(breaching=True) is Urgency.BREACHING
    assert evaluation_urgency(breaching=False) is Urgency.ROUTINE
    assert Urgency.ROLLBACK < Urgency.COMMAND < Urgency.BREACHING < Urgency.ROUTINE


def test_routine_work_leaves_the_reserved_slots_to_urgent_work() -> None:
    busy = {Urgency.ROUTINE: 3}
    assert not admissible(Urgency.ROUTINE, busy, POLICY)
    assert admissible(Urgency.COMMAND, busy, POLICY)
    full = {Urgency.ROUTINE: 3, Urgency.COMMAND: 1}
    assert not admissible(Urgency.ROLLBACK, full, POLICY)  # capacity is a hard limit


def test_an_urgent_waiter_behind_budget_blocked_routine_ones_is_admitted() -> None:
    waiting = {Urgency.ROUTINE: 50, Urgency.BREACHING: 1}
    assert next_to_admit(waiting, {Urgency.ROUTINE: 3}, POLICY) is Urgency.BREACHING
    assert next_to_admit({Urgency.ROUTINE: 50}, {Urgency.ROUTINE: 3}, POLICY) is None
    assert next_to_admit({Urgency.ROUTINE: 50}, {Urgency.ROUTINE: 2}, POLICY) is Urgency.ROUTINE


@pytest.mark.parametrize(("capacity", "budget"), [(0, 1), (4, 0), (4, 5)])
def test_a_policy_without_room_is_refused(capacity: int, budget: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        GatePolicy(capacity, budget)


# A run: arrivals (an urgency) and completions (the index of a holder to finish) interleaved.
steps = st.lists(
    st.one_of(
        st.sampled_from(list(Urgency)).map(lambda u: ("arrive", u)),
        st.integers(min_value=0, max_value=50).map(lambda i: ("finish", i)),
    ),
    max_size=200,
)


@settings(max_examples=120, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=6),
    reserve=st.integers(min_value=0, max_value=5),
    run=steps,
)
def test_admission_keeps_the_limits_and_serves_the_most_urgent_first(
    capacity: int, reserve: int, run: list[tuple[str, object]]
) -> None:
    policy = GatePolicy(capacity, max(1, capacity - reserve))
    waiting: dict[Urgency, collections.deque[int]] = {u: collections.deque() for u in Urgency}
    holders: list[tuple[Urgency, int]] = []
    in_flight: collections.Counter[Urgency] = collections.Counter()
    admitted: list[tuple[Urgency, int]] = []
    arrivals = 0

    def dispatch() -> None:
        while (level := next_to_admit(counts(), in_flight, policy)) is not None:
            # nothing more urgent that could start is left waiting
            assert all(
                not waiting[u] or not admissible(u, in_flight, policy) for u in Urgency if u < level
            )
            ticket = waiting[level].popleft()
            in_flight[level] += 1
            holders.append((level, ticket))
            admitted.append((level, ticket))
        assert sum(in_flight.values()) <= policy.capacity
        assert in_flight[Urgency.ROUTINE] <= policy.routine_budget
        # work-conserving: a waiter that could start, has
        assert all(not waiting[u] or not admissible(u, in_flight, policy) for u in Urgency)

    def counts() -> dict[Urgency, int]:
        return {u: len(q) for u, q in waiting.items()}

    for kind, arg in run:
        if kind == "arrive":
            assert isinstance(arg, Urgency)
            arrivals += 1
            waiting[arg].append(arrivals)
            if arg is not Urgency.ROUTINE and sum(in_flight.values()) < policy.capacity:
                dispatch()
                # urgent work with a free slot never waits
                assert (arg, arrivals) in admitted
        elif holders:
            assert isinstance(arg, int)
            level, _ = holders.pop(arg % len(holders))
            in_flight[level] -= 1
        dispatch()
    for level in Urgency:  # first come, first served within a class
        tickets = [t for u, t in admitted if u is level]
        assert tickets == sorted(tickets)
