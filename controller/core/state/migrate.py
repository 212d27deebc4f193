"""State v1 -> v2: the flat annotation every ptc before state v2 wrote, read into the v2 shape.

v1 kept 30 flat fields, some of them stale in phases that no longer read them (a `pausedFrom`
left on a failed rollout, a `holdKind` after its hold was released); `holdUntil` meant the end
of the step's hold, the bake or the retention, by phase. The migration keeps what the phase
uses (`controller.core.state.model.RECORDS`) and drops the rest, which no decision ever read.
A v1 `specHash` may be in an older canonical form of the config, so it is marked legacy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from pydantic import ConfigDict, TypeAdapter
from pydantic.alias_generators import to_camel

from controller.core.state.model import (
    RECORDS,
    Bake,
    BreachClocks,
    Count,
    DecisionRecord,
    End,
    Hold,
    Holding,
    HoldKind,
    Identity,
    Number,
    Pause,
    Phase,
    Progress,
    Retention,
    RolloutState,
    Text,
    Timestamp,
)

T = TypeVar("T")


@dataclass(frozen=True)
class StateV1:
    """The v1 annotation as written (camelCase keys), types checked as strictly as v2's."""

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(alias_generator=to_camel)

    phase: Phase
    target: Text
    rollout: Text = ""
    stable: Text = ""
    canary: Text = ""
    steps: Count = 0
    spec_hash: Text = ""
    step: Count = 0
    replicas: Count | None = None
    shared_selector: Mapping[Text, Text] = field(default_factory=dict)
    attempt: Count = 1
    started_at: Timestamp | None = None
    phase_since: Timestamp | None = None
    step_reached_at: Timestamp | None = None
    holding_since: Timestamp | None = None
    hold_kind: Any = None  # never checked by v1: an unknown kind reads as none
    weight: Number = 0.0
    hold_until: Timestamp | None = None
    promoted_step: Count | None = None
    paused_from: Phase | None = None
    flipped_at: Timestamp | None = None
    bake_started_at: Timestamp | None = None
    scaled_down_at: Timestamp | None = None
    stable_uid: Text | None = None
    finished_at: Timestamp | None = None
    failed_in: Phase | None = None
    message: Text = ""
    last_command: Text | None = None
    writer: Text | None = None
    breach: BreachClocks | None = None
    history: tuple[DecisionRecord, ...] = ()

    def migrate(self) -> RolloutState:
        """The same rollout as a state v2."""
        phase = self.phase
        pause = None
        if phase is Phase.PAUSED:
            # Every v1 pause recorded its phase; one without (edited by hand) resumes to
            # progressing, as v1's `resume` read it.
            back = self.paused_from
            valid = back is not None and back is not Phase.PAUSED and not back.terminal
            pause = Pause(back if valid and back is not None else Phase.PROGRESSING)
        uses = RECORDS[pause.from_phase if pause is not None else phase]
        return RolloutState(
            identity=Identity(
                revision=self.target,
                rollout=self.rollout,
                stable=self.stable,
                canary=self.canary,
                steps=self.steps,
                spec_hash=self.spec_hash,
                legacy_spec_hash=bool(self.spec_hash),
            ),
            progress=Progress(
                phase=phase,
                step=self.step,
                attempt=self.attempt,
                weight=self.weight,
                replicas=self.replicas,
                shared_selector=dict(self.shared_selector),
                started_at=self.started_at,
                phase_since=self.phase_since,
                promoted_step=self.promoted_step,
            ),
            hold=_if("hold" in uses, self.step_reached_at, lambda at: Hold(at, self.hold_until)),
            holding=_if(
                "holding" in uses,
                self.holding_since,
                lambda since: Holding(since, _kind(self.hold_kind)),
            ),
            bake=(
                Bake(
                    self.flipped_at,
                    self.bake_started_at,
                    self.hold_until if self.bake_started_at is not None else None,
                )
                if "bake" in uses and (self.flipped_at or self.bake_started_at)
                else None
            ),
            retention=_if(
                "retention" in uses,
                self.scaled_down_at,
                lambda at: Retention(at, self.hold_until, self.stable_uid),
            ),
            pause=pause,
            end=_if(
                "end" in uses,
                self.finished_at,
                lambda at: End(at, self.failed_in if phase is Phase.FAILED else None),
            ),
            message=self.message,
            last_command=self.last_command,
            writer=self.writer,
            breach=self.breach,
            history=self.history,
        )


def _if(used: bool, at: datetime | None, build: Callable[[datetime], T]) -> T | None:
    return build(at) if used and at is not None else None


def _kind(value: object) -> HoldKind | None:
    return next((k for k in HoldKind if value == k.value), None)


STATE_V1 = TypeAdapter(StateV1)
