"""The planner: weight -> replica counts, and the order of scale moves between two splits.

Pure functions, no clients. The formula (DESIGN.md §4), for N total replicas and weight w%:

    canary = round_half_up(N * w / 100), clamped to [1, N-1] when 0 < w < 100 and N >= 2
    stable = N - canary

Worked examples: N=4, w=25 -> 1/3 (25%); N=10, w=41 -> 4/6 (40%); N=3, w=50 -> 2/1 (66.7%,
the half rounds up). When that misses w by more than the rollout's tolerance, the surge budget
may hold extra pods: with N=3, maxSurge=1, w=50 -> 2/2 (50%) on 4 pods; with N=1 (the seed's
case) and maxSurge=1 any 0 < w < 100 -> 1/1 (50%) on 2 pods. With N=1 and no surge no weight
strictly between 0 and 100 exists: that plan is infeasible.

Moving between splits, canary goes up first (within N + maxSurge pods), its pods must be Ready,
and only then does stable go down, never taking Ready pods under the floor N - maxUnavailable.

That is the *standard* shifting mode: N pods, but every step that lowers stable terminates pods
the Service still routes to. The *surge* mode never does: stable stays at N and the canary grows
beside it, canary = round_half_up(N * w / (100 - w)) clamped to [1, min(maxSurge, full canary)],
so the weight is k / (N + k): N=4, w=25 -> 1 canary / 4 stable (20%); w=50 -> 4/4 (50%); N=1 ->
1/1 (50%) for any weight. No step goes past 50%: the rest is the flip, which needs the full canary
beside all N stable pods (maxSurge >= the canary's full size), then pins the selector and scales
stable down once it is out of the Service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from controller.core.config.model import Rollout, Shifting


class DeploymentRole(StrEnum):
    """Which of the two Deployments (not a query `Side`, which also has the whole Service)."""

    STABLE = "stable"
    CANARY = "canary"


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's round() rounds halves to even)."""
    return math.floor(x + 0.5)


def resolve_surge(value: int | str, total: int) -> int:
    """maxSurge as a pod count: percentages round up, like a Deployment's."""
    if isinstance(value, str):
        return math.ceil(total * int(value.rstrip("%")) / 100)
    return value


def resolve_unavailable(value: int | str, total: int) -> int:
    """maxUnavailable as a pod count: percentages round down, like a Deployment's."""
    if isinstance(value, str):
        return math.floor(total * int(value.rstrip("%")) / 100)
    return value


@dataclass(frozen=True)
class Limits:
    """N, and how far above and below it the pod count may go while shifting."""

    total: int
    surge: int
    unavailable: int

    @property
    def cap(self) -> int:
        """Most pods (both versions) that may exist at once."""
        return self.total + self.surge

    @property
    def floor(self) -> int:
        """Fewest Ready pods behind the Service while shifting."""
        return max(self.total - self.unavailable, 1)

    @classmethod
    def for_rollout(cls, rollout: Rollout, total: int) -> Limits:
        """Resolve the rollout's maxSurge / maxUnavailable for N = `total`."""
        return cls(
            total=total,
            surge=resolve_surge(rollout.max_surge, total),
            unavailable=min(resolve_unavailable(rollout.max_unavailable, total), total - 1),
        )


@dataclass(frozen=True)
class Split:
    """Replica counts for both versions."""

    canary: int
    stable: int

    @property
    def total(self) -> int:
        """Pods of both versions."""
        return self.canary + self.stable

    @property
    def weight(self) -> float:
        """Canary's share of pods in percent (0 when there are none)."""
        return 100.0 * self.canary / self.total if self.total else 0.0


@dataclass(frozen=True)
class Placement:
    """The split chosen for a weight, and how well it approximates it."""

    weight: float
    split: Split | None
    within_tolerance: bool

    @property
    def error(self) -> float:
        """Percentage points between the asked and the achieved weight."""
        return abs(self.split.weight - self.weight) if self.split else math.inf


def achievable_splits(weight: float, limits: Limits) -> list[Split]:
    """Every split a step at `weight` may use: N..N+surge pods, both versions present if w<100."""
    if weight >= 100:
        return [Split(limits.total, 0)]
    out: list[Split] = []
    for total in range(limits.total, limits.cap + 1):
        out.extend(Split(c, total - c) for c in range(1, total))
    return out


def place(weight: float, limits: Limits, tolerance: float) -> Placement:
    """Choose the split for `weight`: the formula on N pods, else the closest within the surge."""
    if weight >= 100:
        return Placement(weight, Split(limits.total, 0), True)
    n = limits.total
    if n >= 2:
        canary = min(max(round_half_up(n * weight / 100), 1), n - 1)
        on_n = Split(canary, n - canary)
        if abs(on_n.weight - weight) <= tolerance:
            return Placement(weight, on_n, True)
    options = achievable_splits(weight, limits)
    if not options:
        return Placement(weight, None, False)
    # Errors are rounded so float noise cannot break a tie the half-up rule should decide.
    best = min(options, key=lambda s: (round(abs(s.weight - weight), 9), s.total, -s.canary))
    return Placement(weight, best, abs(best.weight - weight) <= tolerance)


def place_surge(weight: float, limits: Limits, tolerance: float, most: int) -> Placement:
    """Choose the split for `weight` with stable at N: canary k of at most min(surge, `most`)."""
    n = limits.total
    top = min(limits.surge, most)
    if top < 1 or n < 1:
        return Placement(weight, None, False)
    want = n * weight / (100 - weight) if weight < 100 else float(top)
    k = min(max(round_half_up(want), 1), top)
    # k/(N+k) is not linear in k: the half-up pick can lose to its neighbour by a hair.
    best = min(
        (Split(c, n) for c in {max(k - 1, 1), k, min(k + 1, top)}),
        key=lambda s: (round(abs(s.weight - weight), 9), s.canary),
    )
    return Placement(weight, best, abs(best.weight - weight) <= tolerance)


def full_canary(rollout: Rollout, limits: Limits) -> int:
    """The canary's size at the flip."""
    return rollout.flip.canary_replicas or limits.total


def place_step(rollout: Rollout, weight: float, limits: Limits) -> Placement:
    """The split a step at `weight` uses in the rollout's shifting mode."""
    if rollout.shifting is Shifting.SURGE:
        return place_surge(weight, limits, rollout.weight_tolerance, full_canary(rollout, limits))
    return place(weight, limits, rollout.weight_tolerance)


def surge_shortfall(rollout: Rollout, limits: Limits) -> str | None:
    """Why surge mode cannot flip with these limits (None: it can, or the mode is standard)."""
    if rollout.shifting is not Shifting.SURGE:
        return None
    need = full_canary(rollout, limits)
    if limits.surge >= need:
        return None
    return (
        f"shifting: surge needs maxSurge >= {need} (the full canary beside all {limits.total} "
        f"stable pod(s) at the flip), it allows {limits.surge}: raise maxSurge (e.g. 100%) or "
        "use shifting: standard"
    )


@dataclass(frozen=True)
class Counts:
    """What the cluster has: desired (spec) and Ready replicas of each version."""

    canary_spec: int
    canary_ready: int
    stable_spec: int
    stable_ready: int

    def settled_at(self, target: Split) -> bool:
        """Both versions are at the target and all their pods are Ready."""
        return (
            self.canary_spec == self.canary_ready == target.canary
            and self.stable_spec == self.stable_ready == target.stable
        )


@dataclass(frozen=True)
class Move:
    """Set one Deployment's replicas."""

    role: DeploymentRole
    replicas: int


@dataclass(frozen=True)
class Blocked:
    """No move is possible yet; `reason` says why (waiting on readiness, or a dead end)."""

    reason: str
    waiting_for_pods: bool


def next_move(counts: Counts, target: Split, limits: Limits) -> Move | Blocked | None:
    """The next scale move from `counts` towards `target`; None once settled.

    Increases come first and never exceed N + maxSurge pods; a decrease waits until every
    started pod is Ready and never takes Ready pods under the floor.
    """
    if counts.settled_at(target):
        return None
    if counts.canary_spec > counts.canary_ready or counts.stable_spec > counts.stable_ready:
        return Blocked("waiting for pods to become Ready", waiting_for_pods=True)
    room = limits.cap - (counts.canary_spec + counts.stable_spec)
    if counts.canary_spec < target.canary and room > 0:
        return Move(
            DeploymentRole.CANARY,
            counts.canary_spec + min(room, target.canary - counts.canary_spec),
        )
    if counts.stable_spec < target.stable and room > 0:
        return Move(
            DeploymentRole.STABLE,
            counts.stable_spec + min(room, target.stable - counts.stable_spec),
        )
    if counts.stable_spec > target.stable:
        lowest = max(target.stable, limits.floor - counts.canary_ready)
        if lowest < counts.stable_spec:
            return Move(DeploymentRole.STABLE, lowest)
    if counts.canary_spec > target.canary:
        lowest = max(target.canary, limits.floor - counts.stable_ready)
        if lowest < counts.canary_spec:
            return Move(DeploymentRole.CANARY, lowest)
    if counts.canary_spec != target.canary or counts.stable_spec != target.stable:
        return Blocked(
            f"cannot reach {target.canary} canary / {target.stable} stable within "
            f"{limits.cap} pods and a floor of {limits.floor} Ready",
            waiting_for_pods=False,
        )
    return Blocked("waiting for pods to become Ready", waiting_for_pods=True)


def moves_between(start: Split, target: Split, limits: Limits) -> tuple[list[Move], int]:
    """The moves from one settled split to another if pods were Ready at once, and peak pods."""
    canary, stable = start.canary, start.stable
    moves: list[Move] = []
    peak = canary + stable
    for _ in range(4 * (limits.cap + 2)):
        step = next_move(Counts(canary, canary, stable, stable), target, limits)
        if step is None:
            return moves, peak
        if isinstance(step, Blocked):
            raise ValueError(step.reason)
        moves.append(step)
        if step.role is DeploymentRole.CANARY:
            canary = step.replicas
        else:
            stable = step.replicas
        peak = max(peak, canary + stable)
    raise ValueError("no convergence")  # pragma: no cover - next_move always progresses


@dataclass(frozen=True)
class PlannedStep:
    """One row of a plan."""

    index: int  # 0-based; the flip is len(steps)
    label: str
    weight: float
    split: Split | None
    achieved: float | None
    within_tolerance: bool
    peak_pods: int | None
    hold: timedelta
    manual_gate: bool
    moves: list[Move]
    cumulative: timedelta  # holds and bake up to and including this row
    note: str = ""
    serving_terminated: int = 0  # pods removed by this row's moves while the Service routes to them


@dataclass(frozen=True)
class Plan:
    """A rollout's stages for a given N."""

    rollout: str
    limits: Limits
    steps: list[PlannedStep]
    shifting: Shifting = Shifting.STANDARD

    @property
    def serving_terminated(self) -> int:
        """Pods terminated while the Service routes to them, over the whole rollout."""
        return sum(s.serving_terminated for s in self.steps)

    @property
    def feasible(self) -> bool:
        """Every stage has a split and a way to reach it."""
        return all(s.split is not None and not s.note.startswith("infeasible") for s in self.steps)

    @property
    def minimum_duration(self) -> timedelta:
        """Holds plus bake: the least time to completion with instant readiness."""
        return self.steps[-1].cumulative if self.steps else timedelta(0)


def flip_split(rollout: Rollout, limits: Limits, before: Split) -> Split:
    """Canary at full size; stable kept warm with whatever the surge budget leaves.

    In surge mode stable keeps every pod until the selector is pinned (see `surge_shortfall`).
    """
    canary = full_canary(rollout, limits)
    if rollout.shifting is Shifting.SURGE:
        return Split(canary, before.stable)
    return Split(canary, min(before.stable, max(0, limits.cap - canary)))


def serving_terminations(start: Split, moves: list[Move]) -> int:
    """Pods the moves remove while both versions are behind the shared selector."""
    current = {DeploymentRole.CANARY: start.canary, DeploymentRole.STABLE: start.stable}
    removed = 0
    for move in moves:
        removed += max(current[move.role] - move.replicas, 0)
        current[move.role] = move.replicas
    return removed


def rollback_split(rollout: Rollout, total: int) -> Split:
    """Stable back to N, canary to its rollback size."""
    return Split(rollout.rollback.canary_replicas, total)


def plan_rollout(rollout: Rollout, total: int) -> Plan:
    """Every step's split, the moves to reach it and the time it takes, then the flip."""
    limits = Limits.for_rollout(rollout, total)
    rows: list[PlannedStep] = []
    current = Split(0, total)
    elapsed = timedelta(0)
    for i, step in enumerate(rollout.steps):
        placement = place_step(rollout, step.weight, limits)
        elapsed += step.hold
        note = ""
        moves: list[Move] = []
        peak: int | None = None
        start = current
        if placement.split is None:
            note = "infeasible: " + (
                (surge_shortfall(rollout, limits) or "shifting: surge needs maxSurge >= 1")
                if rollout.shifting is Shifting.SURGE
                else f"no split of {total} pod(s) + {limits.surge} surge has both versions; "
                "raise maxSurge"
            )
        else:
            try:
                moves, peak = moves_between(current, placement.split, limits)
            except ValueError as exc:
                note = f"infeasible: {exc}"
            if not placement.within_tolerance:
                note = note or (
                    f"weight {step.weight:g}% is approximated by {placement.split.weight:.1f}% "
                    f"(tolerance {rollout.weight_tolerance:g} points)"
                )
            current = placement.split
        rows.append(
            PlannedStep(
                index=i,
                label=f"step {i + 1}",
                weight=step.weight,
                split=placement.split,
                achieved=placement.split.weight if placement.split else None,
                within_tolerance=placement.within_tolerance,
                peak_pods=peak,
                hold=step.hold,
                manual_gate=step.manual_gate,
                moves=moves,
                cumulative=elapsed,
                note=note,
                serving_terminated=serving_terminations(start, moves),
            )
        )
    target = flip_split(rollout, limits, current)
    elapsed += rollout.flip.bake
    shortfall = surge_shortfall(rollout, limits)
    if shortfall is not None:
        moves, peak, note = [], None, f"infeasible: {shortfall}"
    else:
        try:
            moves, peak = moves_between(current, target, limits)
            note = "" if target.stable else "no stable pod stays warm through the bake"
        except ValueError as exc:
            moves, peak, note = [], None, f"infeasible: {exc}"
    rows.append(
        PlannedStep(
            index=len(rollout.steps),
            label="flip",
            weight=100.0,
            split=target,
            achieved=100.0,
            within_tolerance=True,
            peak_pods=peak,
            hold=rollout.flip.bake,
            manual_gate=False,
            moves=moves,
            cumulative=elapsed,
            note=note,
            # Stable pods removed before the pin still serve; the scale-down after the bake
            # (retention) is not a move of this row.
            serving_terminated=serving_terminations(current, moves),
        )
    )
    return Plan(rollout.name, limits, rows, rollout.shifting)
