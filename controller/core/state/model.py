"""The persisted rollout state (v2): one frozen record per group of meaning.

A state is the rollout's `Identity` (what is rolled out), its `Progress` (phase, step, attempt,
weight...), and the records of the phase it is in, each present only in the phases that use it:

=================  ==============================================  ==========================
record             what                                            present in
=================  ==============================================  ==========================
`Hold`             the step's split in place; its planned hold     progressing, holding
`Holding`          held past the plan: on what, since when         progressing, holding,
                                                                   flipping, baking
`Bake`             the flip and the bake after it                  baking
`Retention`        stable kept at 0 for instant rollback           scaling-down
`Pause`            the phase a pause interrupted                   paused (always)
`End`              when it ended; the phase a failure came from    completed, rolled-back,
                                                                   failed
=================  ==============================================  ==========================

A paused rollout keeps the records of the phase it paused (``pause.from_phase``), so resuming finds
them. "Hold" has one meaning: a step's hold (`Hold`, and `Holding` while it runs past its
plan); the bake and retention ends are `Bake.until` and `Retention.until`. `RolloutState`
refuses records its phase does not use, and `RolloutState.moved` drops the records of the
phase it leaves, so a transition names only what it sets.

The types carry their JSON form (camelCase keys, UTC timestamps with a Z, strict numbers and
strings) for the pydantic codec in `controller.core.state.codec`; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, Strict
from pydantic.alias_generators import to_camel

HISTORY_LIMIT = 10  # decisions the annotation keeps (the newest)


class Phase(StrEnum):
    """Where a rollout is."""

    PENDING = "pending"
    PREFLIGHT = "preflight"
    PROGRESSING = "progressing"
    HOLDING = "holding"
    PAUSED = "paused"
    FLIPPING = "flipping"
    BAKING = "baking"
    SCALING_DOWN = "scaling-down"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """Nothing more happens without a new spec or a command."""
        return self in (Phase.COMPLETED, Phase.ROLLED_BACK, Phase.FAILED)


class StateError(ValueError):
    """The persisted state cannot be read."""


class HoldKind(StrEnum):
    """What a step held past its plan waits on."""

    ANALYSIS = "analysis"
    CAPACITY = "capacity"
    TRAFFIC_SHARE = "traffic-share"


def format_timestamp(value: datetime | None) -> str | None:
    """UTC with a Z (naive means UTC), as the state stores it; None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:  # naive means UTC here, as in `parse_timestamp`, not local time
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_timestamp(value: object) -> datetime:
    """An ISO 8601 string as an aware datetime (naive means UTC); ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"expected a timestamp string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad timestamp {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# The JSON forms of the field types (pydantic reads the annotations; mypy sees the base type).
Timestamp = Annotated[
    datetime, BeforeValidator(parse_timestamp), PlainSerializer(format_timestamp, return_type=str)
]
Count = Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)]  # a 5000-digit step is no step
Text = Annotated[str, Strict()]
Number = Annotated[float, Strict()]  # ints are numbers too; bools and strings are not

_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True)
_PLAIN = ConfigDict()  # decision records keep the snake_case keys ptc has always written


@dataclass(frozen=True)
class MetricRecord:
    """One metric's evaluation as recorded in a decision."""

    __pydantic_config__: ClassVar[ConfigDict] = _PLAIN

    name: Text
    verdict: Text
    value: Number | None = None
    stable: Number | None = None
    threshold: Text = ""
    detail: Text = ""

    def to_json(self) -> dict[str, Any]:
        """A metric's reading as logs, `ptc status` and the API show it (one shape everywhere)."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "value": self.value,
            "stable": self.stable,
            "threshold": self.threshold,
            "reason": self.detail,
        }


@dataclass(frozen=True)
class DecisionRecord:
    """What was decided, when, why, and from which values."""

    __pydantic_config__: ClassVar[ConfigDict] = _PLAIN

    at: Timestamp
    phase: Text
    step: Count
    decision: Text
    reason: Text
    metrics: tuple[MetricRecord, ...] = ()
    by: Text = "ptc"
    # the canary's observed share of requests (percent) when the decision was taken, if measured
    weight_observed: Number | None = None


@dataclass(frozen=True)
class BreachClocks:
    """When each breaching metric's ``for:`` clock started, for one attempt and step.

    A restarted controller restores them only into the same attempt and step: another attempt
    or step is judged afresh, as the running controller would.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _PLAIN

    attempt: Count
    step: Count
    since: Mapping[Text, Timestamp] = field(default_factory=dict)


@dataclass(frozen=True)
class Identity:
    """What is being rolled out; a new `revision` is a new rollout."""

    __pydantic_config__: ClassVar[ConfigDict] = _CAMEL

    # Hash of what is rolled out (service, stable, canary, version label): the rollout target.
    revision: Text
    rollout: Text = ""  # the rollout's name in the config (so `ptc promote NAME` finds it)
    stable: Text = ""  # the Deployments, for status readers that have no config
    canary: Text = ""
    steps: Count = 0
    spec_hash: Text = ""  # `Rollout.spec_hash()` of the config the rollout started under
    # The hash came from a state v1, written by a ptc whose canonical form of the config may
    # differ from this one's: a mismatch then says nothing (`ptc report` says "unknown").
    legacy_spec_hash: bool = False


@dataclass(frozen=True)
class Progress:
    """Where the rollout is: the fields every phase has."""

    __pydantic_config__: ClassVar[ConfigDict] = _CAMEL

    phase: Phase
    step: Count = 0
    attempt: Count = 1
    weight: Number = 0.0  # canary weight of the split in place (percent; 100 after the flip)
    replicas: Count | None = None  # N, resolved when preflight passes
    shared_selector: Mapping[Text, Text] = field(default_factory=dict)
    started_at: Timestamp | None = None
    phase_since: Timestamp | None = None
    # A `promote` skipped the hold and gates of this step (len(steps) is the bake).
    promoted_step: Count | None = None


@dataclass(frozen=True)
class Hold:
    """A step's hold: its split in place since `reached_at`, planned to end at `until`."""

    __pydantic_config__: ClassVar[ConfigDict] = _CAMEL

    reached_at: Timestamp
    until: Timestamp | None = None  # None: written by a ptc that did not record it


@dataclass(frozen=True)
class Holding:
    """Held past the plan (or at the capacity gate) since `since`, waiting on `kind`."""

    __pydantic_config__: ClassVar[ConfigDict] = _CAMEL

    since: Timestamp
    kind: HoldKind | None = None  # None: written by a ptc that did not record it


@dataclass(frozen=True)
class Bake:
    """After the flip: the bake runs from `started_at` (endpoints list only canary) to `until`."""

    __pydantic_config__: ClassVar[ConfigDict] = _CAMEL

    flipped_at: Timestamp | None = None  # None: written by a ptc that did not record it
    started_at: Timestamp | None = None  # None: the flip's endpoints have not settled yet
    until: Timestamp | None = None

    def __post_init__(self) -> None:
        if self.until is not None and self.started_at is None:
            raise ValueError("a bake with an end has a start")


@dataclass(frozen=True)
class Retention:
    """Stable kept at 0 since `scaled_down_at`, until `until`, for instant rollback."""

    __pydantic_config__: ClassVar[ConfigDict] = _CAMEL

    scaled_down_at: Timestamp
    until: Timestamp | None = None  # None: written by a ptc that did not record it
    # The stable Deployment's uid when retention started: only that one is deleted after it.
    # None: unknown (no stable then, or a state from a ptc that did not record it).
    stable_uid: Text | None = None


@dataclass(frozen=True)
class Pause:
    """Paused: `from_phase` is the phase to resume (its records stay with the state)."""

    __pydantic_config__: ClassVar[ConfigDict] = _CAMEL

    from_phase: Phase

    def __post_init__(self) -> None:
        if self.from_phase is Phase.PAUSED or self.from_phase.terminal:
            raise ValueError(f"cannot pause from {self.from_phase.value}")


@dataclass(frozen=True)
class End:
    """A rollout that ended: when, and for a failure the phase it failed in."""

    __pydantic_config__: ClassVar[ConfigDict] = _CAMEL

    finished_at: Timestamp
    # Preflight or pending means no traffic moved, so `retry` is free (no cooldown, no
    # attempt). None: unknown (a state from an older ptc), or not failed.
    failed_in: Phase | None = None


_STEPPING = (Phase.PROGRESSING, Phase.HOLDING)
# The records each phase uses (a paused state uses those of the phase it paused).
RECORDS: Mapping[Phase, frozenset[str]] = {
    **{p: frozenset() for p in Phase},
    Phase.PROGRESSING: frozenset({"hold", "holding"}),
    Phase.HOLDING: frozenset({"hold", "holding"}),
    Phase.FLIPPING: frozenset({"holding"}),
    Phase.BAKING: frozenset({"holding", "bake"}),
    Phase.SCALING_DOWN: frozenset({"retention"}),
    Phase.COMPLETED: frozenset({"end"}),
    Phase.ROLLED_BACK: frozenset({"end"}),
    Phase.FAILED: frozenset({"end"}),
}
PHASE_RECORDS = ("hold", "holding", "bake", "retention", "end")


@dataclass(frozen=True)
class RolloutState:
    """Everything a restarted controller needs to resume a rollout where it was."""

    __pydantic_config__: ClassVar[ConfigDict] = _CAMEL

    identity: Identity
    progress: Progress
    hold: Hold | None = None
    holding: Holding | None = None
    bake: Bake | None = None
    retention: Retention | None = None
    pause: Pause | None = None
    end: End | None = None
    message: Text = ""  # why the rollout is where it is, for people
    last_command: Text | None = None  # id of the last command applied (exactly once)
    writer: Text | None = None  # identity of the controller that wrote this
    breach: BreachClocks | None = None  # the analysis's `for:` clocks, restored on restart
    history: tuple[DecisionRecord, ...] = ()

    def __post_init__(self) -> None:
        phase = self.progress.phase
        if (phase is Phase.PAUSED) != (self.pause is not None):
            raise ValueError(
                f"a {phase.value} state {'lacks' if self.pause is None else 'has'} a pause"
            )
        if self.end is not None and self.end.failed_in is not None and phase is not Phase.FAILED:
            raise ValueError(f"a {phase.value} state has a failed-in phase")
        allowed = RECORDS[self.pause.from_phase if self.pause is not None else phase]
        extra = [n for n in PHASE_RECORDS if getattr(self, n) is not None and n not in allowed]
        if extra:
            raise ValueError(f"a {phase.value} state has no {', '.join(extra)}")

    # The fields nearly every reader wants, without spelling the group.
    @property
    def phase(self) -> Phase:
        return self.progress.phase

    @property
    def step(self) -> int:
        return self.progress.step

    @property
    def attempt(self) -> int:
        return self.progress.attempt

    @property
    def revision(self) -> str:
        return self.identity.revision

    @property
    def stepping(self) -> bool:
        """Progressing or holding at a step (the phases of a step's `Hold`)."""
        return self.phase in _STEPPING

    def moved(self, **changes: Any) -> RolloutState:
        """A copy with `changes`: `Progress` fields by name, records and the rest as such.

        Records the new phase does not use are dropped (leaving baking ends the bake record);
        a pause is dropped when the phase is no longer paused.
        """
        progress = {k: changes.pop(k) for k in list(changes) if k in _PROGRESS_FIELDS}
        new = replace(self.progress, **progress) if progress else self.progress
        merged = {n: changes.pop(n, getattr(self, n)) for n in (*PHASE_RECORDS, "pause")}
        if new.phase is not Phase.PAUSED:
            merged["pause"] = None
        pause = merged["pause"]
        allowed = RECORDS[pause.from_phase if pause is not None else new.phase]
        for name in PHASE_RECORDS:
            if name not in allowed:
                merged[name] = None
        return replace(self, progress=new, **merged, **changes)

    def with_record(self, record: DecisionRecord, **changes: Any) -> RolloutState:
        """A copy with `changes` applied (see `moved`) and `record` appended to the history."""
        history = (*self.history, record)[-HISTORY_LIMIT:]
        return self.moved(history=history, **changes)


_PROGRESS_FIELDS = frozenset(Progress.__dataclass_fields__)
