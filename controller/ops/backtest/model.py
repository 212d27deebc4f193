"""What a backtest is asked (times, tick grid, which step) and what it found (pure).

A backtest replays one rollout step's analysis over a past period: at every evaluation tick
between ``--from`` and ``--to`` the controller's own runner and evaluator judge what
Prometheus held then. This module holds the parts without I/O: reading the times people type,
the tick grid and its bound, the request as validated, and the summary of the verdicts (first
fail / hold / pass per metric, the moment a rollback would have happened).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from controller.core.analysis.evaluate import AnalysisSummary, CapacityResult, Verdict
from controller.core.config.model import Analysis, Policy, Rollout
from controller.core.durations import format_duration, parse_duration
from controller.ops.backtest.selectors import Bindings

# Prometheus answers at most 11,000 points per series in one range query; one range query per
# compiled query must cover the whole period, so that is the bound on ticks.
MAX_TICKS = 11_000
MIN_EVERY = timedelta(seconds=1)

TIME_HELP = (
    "an RFC 3339 time (2026-01-13T14:00:00Z; no offset means UTC), Unix seconds "
    "(1768312800), 'now' or 'now-DURATION' (now-2h)"
)
_RELATIVE = re.compile(r"^now\s*(?:-\s*(?P<ago>\S+))?$")
_EPOCH = re.compile(r"^\d{1,12}(?:\.\d+)?$")


class BacktestInputError(ValueError):
    """The request cannot be run as asked (exit 2); the message says what to change."""


def parse_time(text: str, now: datetime, flag: str = "time") -> datetime:
    """A time as people type it -> aware UTC datetime; BacktestInputError saying the forms."""
    raw = text.strip()
    relative = _RELATIVE.match(raw.lower())
    try:
        if relative is not None:
            ago = relative.group("ago")
            value = now - (parse_duration(ago) if ago else timedelta(0))
        elif _EPOCH.match(raw):
            value = datetime.fromtimestamp(float(raw), UTC)
        else:
            parsed = datetime.fromisoformat(raw)
            value = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    except (ValueError, OverflowError, OSError):
        raise BacktestInputError(f"{flag} {text!r} is not a time: use {TIME_HELP}") from None
    return value.astimezone(UTC)


def _to_ms(at: datetime) -> datetime:
    """Whole milliseconds: the resolution of Prometheus' timestamps."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def tick_count(start: datetime, end: datetime, every: timedelta) -> int:
    """Ticks on the grid start, start + every, ... up to and including `end`."""
    return (end - start) // every + 1


def tick_times(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """The evaluation ticks: start, start + every, ... <= end (the range query's own steps)."""
    return [start + i * every for i in range(tick_count(start, end, every))]


@dataclass(frozen=True)
class BacktestSpec:
    """A validated backtest: one rollout step's analysis over [start, end] every `every`."""

    rollout: Rollout
    step: int  # 0-based index into rollout.steps
    start: datetime
    end: datetime
    every: timedelta
    bindings: Bindings = field(default_factory=Bindings)

    @property
    def analysis(self) -> Analysis:
        """The analysis in force at the step (its override over the rollout's)."""
        return self.rollout.step_analysis(self.step)

    @property
    def next_weight(self) -> float:
        """The weight the capacity gate is judged for: the next step's, or 100 (the flip)."""
        steps = self.rollout.steps
        return steps[self.step + 1].weight if self.step + 1 < len(steps) else 100.0

    def ticks(self) -> list[datetime]:
        """Every evaluation time of the backtest."""
        return tick_times(self.start, self.end, self.every)


def make_spec(
    rollout: Rollout,
    start: datetime,
    end: datetime,
    *,
    step: int = 1,
    every: timedelta | None = None,
    bindings: Bindings | None = None,
    max_ticks: int = MAX_TICKS,
) -> BacktestSpec:
    """Validate a request; `step` counts from 1 as people read "step 2/3"."""
    if not 1 <= step <= len(rollout.steps):
        raise BacktestInputError(
            f"--at-step {step}: rollout {rollout.name!r} has steps 1..{len(rollout.steps)}"
        )
    analysis = rollout.step_analysis(step - 1)
    if not analysis.metrics:
        raise BacktestInputError(
            f"rollout {rollout.name!r} has no analysis metrics at step {step}: nothing to replay"
        )
    if end <= start:
        raise BacktestInputError(
            f"--to ({end:%Y-%m-%dT%H:%M:%SZ}) must be after --from ({start:%Y-%m-%dT%H:%M:%SZ})"
        )
    every = analysis.interval if every is None else every
    if every < MIN_EVERY:
        raise BacktestInputError(f"--step {format_duration(every)}: must be at least 1s")
    start, end = _to_ms(start), _to_ms(end)
    count = tick_count(start, end, every)
    if count > max_ticks:
        coarser = timedelta(seconds=math.ceil((end - start).total_seconds() / (max_ticks - 1)))
        raise BacktestInputError(
            f"{format_duration(end - start)} every {format_duration(every)} is {count} ticks, "
            f"more than {max_ticks}: shorten the period or coarsen with --step "
            f"{format_duration(coarser)} (or more)"
        )
    return BacktestSpec(rollout, step - 1, start, end, every, bindings or Bindings())


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickResult:
    """One evaluation tick: the evaluator's summary and, with a capacity gate, its reading."""

    at: datetime
    summary: AnalysisSummary
    capacity: CapacityResult | None = None


HOLDING = (Verdict.INCONCLUSIVE, Verdict.ERROR)


@dataclass(frozen=True)
class MetricOutcome:
    """When one metric first passed, held (inconclusive or error) and failed."""

    name: str
    threshold: str
    first_pass: datetime | None
    first_hold: datetime | None
    first_fail: datetime | None
    breach_since: datetime | None  # when the breach behind the first fail began
    fail_reason: str  # the evaluator's reason at the first fail ("" without one)
    hold_reason: str  # ... and at the first hold
    counts: dict[str, int]  # ticks per verdict


@dataclass(frozen=True)
class Outcome:
    """A moment the controller would have acted: rolled back or paused for a human."""

    at: datetime
    action: str  # "rollback" or "pause"
    reason: str


@dataclass(frozen=True)
class BacktestSummary:
    """The answer to "would this config have caught it, and when?"."""

    metrics: tuple[MetricOutcome, ...]
    counts: dict[str, int]  # ticks per overall verdict
    rollback: Outcome | None  # the first tick whose overall verdict is fail
    max_hold: Outcome | None  # the first tick held longer than maxHold (policy not hold)
    capacity_first_pass: datetime | None = None
    capacity_first_hold: datetime | None = None

    @property
    def first_action(self) -> Outcome | None:
        """What the controller would have done first: rollback, or maxHold's pause/rollback."""
        found = [o for o in (self.rollback, self.max_hold) if o is not None]
        return min(found, key=lambda o: o.at) if found else None


def _counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    return {v.value: sum(1 for x in verdicts if x is v) for v in Verdict}


def _metric_outcome(name: str, ticks: Sequence[TickResult]) -> MetricOutcome:
    first: dict[str, TickResult] = {}
    verdicts: list[Verdict] = []
    threshold, fail_reason, hold_reason, breach = "", "", "", None
    for tick in ticks:
        result = next((m for m in tick.summary.metrics if m.name == name), None)
        if result is None:
            continue
        threshold = threshold or result.threshold
        verdicts.append(result.verdict)
        kind = "hold" if result.verdict in HOLDING else result.verdict.value
        if kind not in first:
            first[kind] = tick
            if result.verdict is Verdict.FAIL:
                fail_reason, breach = result.reason, result.breach_since
            elif kind == "hold":
                hold_reason = result.reason
    at = {kind: t.at for kind, t in first.items()}
    return MetricOutcome(
        name=name,
        threshold=threshold,
        first_pass=at.get("pass"),
        first_hold=at.get("hold"),
        first_fail=at.get("fail"),
        breach_since=breach,
        fail_reason=fail_reason,
        hold_reason=hold_reason,
        counts=_counts(verdicts),
    )


def _max_hold(analysis: Analysis, ticks: Sequence[TickResult]) -> Outcome | None:
    """The first tick at which an unbroken hold has lasted maxHold (as the reconciler counts).

    A hold starts at the first inconclusive or error tick and lasts until a pass or a fail; the
    policy is the one for the verdict at the tick where maxHold is reached.
    """
    since: datetime | None = None
    for tick in ticks:
        verdict = tick.summary.verdict
        if verdict not in HOLDING:
            since = None
            continue
        since = since or tick.at
        held = tick.at - since
        policy = analysis.on_error if verdict is Verdict.ERROR else analysis.on_inconclusive
        if held >= analysis.max_hold and policy is not Policy.HOLD:
            action = "rollback" if policy is Policy.ROLLBACK else "pause"
            return Outcome(
                tick.at,
                action,
                f"held {format_duration(held)} >= maxHold {format_duration(analysis.max_hold)} "
                f"(on{'Error' if verdict is Verdict.ERROR else 'Inconclusive'}: "
                f"{policy.value}): {tick.summary.explain()}",
            )
    return None


def summarise(spec: BacktestSpec, ticks: Sequence[TickResult]) -> BacktestSummary:
    """First pass / hold / fail per metric, and the first moment ptc would have acted."""
    names = [m.name for m in spec.analysis.metrics]
    rollback = next((t for t in ticks if t.summary.verdict is Verdict.FAIL), None)
    gate = [t for t in ticks if t.capacity is not None]
    return BacktestSummary(
        metrics=tuple(_metric_outcome(n, ticks) for n in names),
        counts=_counts([t.summary.verdict for t in ticks]),
        rollback=(
            Outcome(rollback.at, "rollback", f"analysis failed: {rollback.summary.explain()}")
            if rollback is not None
            else None
        ),
        max_hold=_max_hold(spec.analysis, ticks),
        capacity_first_pass=next(
            (t.at for t in gate if t.capacity and t.capacity.verdict is Verdict.PASS), None
        ),
        capacity_first_hold=next(
            (t.at for t in gate if t.capacity and t.capacity.verdict is not Verdict.PASS), None
        ),
    )


@dataclass(frozen=True)
class BacktestResult:
    """Everything a backtest found, ready to print."""

    spec: BacktestSpec
    prometheus: str  # the URL asked
    queries: tuple[str, ...]
    ticks: tuple[TickResult, ...]
    summary: BacktestSummary
    notes: tuple[str, ...]
    fetch_seconds: float
    replay_seconds: float


__all__ = [
    "MAX_TICKS",
    "TIME_HELP",
    "BacktestInputError",
    "BacktestResult",
    "BacktestSpec",
    "BacktestSummary",
    "MetricOutcome",
    "Outcome",
    "TickResult",
    "make_spec",
    "parse_time",
    "summarise",
    "tick_count",
    "tick_times",
]
