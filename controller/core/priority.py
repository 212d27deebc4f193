"""Who goes first when the controller is behind: the ordering policy (pure).

A controller running more rollouts than its core keeps up with queues work in two places: API
requests wait for one of the transport's in-flight slots, and evaluations wait for the
evaluation budget (each one is a handful of Prometheus queries). Without an order, a rollback
decided in a breach waits behind hundreds of routine holds and step advances, which is exactly
when it must not wait. This module ranks work by :class:`Urgency` and says which waiter is
admitted next; :mod:`controller.shell.gate` is the asyncio mechanism that applies it.

The rules:

- the most urgent waiter goes first, and among equals the one that waited longest (FIFO), so
  routine work is never reordered among itself;
- routine work may hold at most ``routine_budget`` of the ``capacity`` slots: the rest stay free
  for urgent work, which therefore never waits behind more than ``capacity - routine_budget``
  free slots' worth of routine requests already in flight;
- urgent work is never refused a free slot, so routine work cannot starve it; routine work waits
  only while urgent work or its own budget holds the slots (it is not starved either: urgent work
  is rare and finishes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum


class Urgency(IntEnum):
    """How soon a piece of work must run; lower goes first."""

    ROLLBACK = 0  # executing a rollback or abort: stable back to full, canary out
    COMMAND = 1  # a person's or an alert route's command (pause, promote, retry, resume)
    BREACHING = 2  # an evaluation of a rollout whose last verdict failed: a `for:` is running
    ROUTINE = 3  # holds, step advances, status writes, routine evaluations


def reconcile_urgency(*, rolling_back: bool, command: bool) -> Urgency:
    """The urgency of a reconcile's writes: a rollback first, then a command, else routine."""
    if rolling_back:
        return Urgency.ROLLBACK
    if command:
        return Urgency.COMMAND
    return Urgency.ROUTINE


def evaluation_urgency(*, breaching: bool) -> Urgency:
    """An evaluation that may confirm a breach (and so a rollback) ranks above routine ones."""
    return Urgency.BREACHING if breaching else Urgency.ROUTINE


@dataclass(frozen=True)
class GatePolicy:
    """``capacity`` slots in all; routine work may hold ``routine_budget`` of them."""

    capacity: int
    routine_budget: int

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")
        if not 1 <= self.routine_budget <= self.capacity:
            raise ValueError(
                f"routine_budget must be within 1..{self.capacity}, got {self.routine_budget}"
            )


def admissible(urgency: Urgency, in_flight: Mapping[Urgency, int], policy: GatePolicy) -> bool:
    """Whether work of ``urgency`` may take a slot now, given what holds slots."""
    if sum(in_flight.values()) >= policy.capacity:
        return False
    if urgency == Urgency.ROUTINE:
        return in_flight.get(Urgency.ROUTINE, 0) < policy.routine_budget
    return True


def next_to_admit(
    waiting: Mapping[Urgency, int], in_flight: Mapping[Urgency, int], policy: GatePolicy
) -> Urgency | None:
    """The class whose oldest waiter takes the next slot (None: nobody may start now).

    ``waiting`` counts waiters per urgency (each class is served first come, first served).
    The most urgent class with a waiter that is :func:`admissible` wins: a routine waiter held
    back by its budget does not block an urgent one that arrived after it.
    """
    for urgency in sorted(Urgency):
        if waiting.get(urgency, 0) > 0 and admissible(urgency, in_flight, policy):
            return urgency
    return None
