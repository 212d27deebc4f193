"""Inputs and outputs of `decide()`: what the shell observed, and the one action to take."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum

from controller.core.analysis.evaluate import Sample
from controller.core.analysis.share import ShareReading
from controller.core.plan import Counts, DeploymentRole
from controller.core.state import RolloutState

# --------------------------------------------------------------------------------------------
# Inputs


class CommandKind(StrEnum):
    """What a person can ask of a rollout."""

    PROMOTE = "promote"
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"


@dataclass(frozen=True)
class Command:
    """A manual (or alert-given) command; `id` makes it apply exactly once."""

    kind: CommandKind
    id: str
    by: str = "unknown"
    # What the command is about, appended to the decision's reason (an alert's labels,
    # startsAt and source), so the record and the Event carry it.
    detail: str = ""


@dataclass(frozen=True)
class DeploymentView:
    """One Deployment as observed: desired and Ready replicas (terminating pods excluded)."""

    exists: bool = True
    spec_replicas: int = 0
    ready_replicas: int = 0
    uid: str = ""  # this incarnation of the name ("" when unknown)


@dataclass(frozen=True)
class PreflightResult:
    """The preflight's findings: problems stop the rollout, waits retry it, warnings are kept."""

    at: datetime
    problems: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoints:
    """Ready endpoints behind the Service, by version."""

    canary: int = 0
    stable: int = 0
    other: int = 0


@dataclass(frozen=True)
class Observed:
    """What the shell saw of the cluster (and the capacity readings) for one rollout."""

    stable: DeploymentView
    canary: DeploymentView
    selector: Mapping[str, str] | None
    endpoints: Endpoints = Endpoints()
    preflight: PreflightResult | None = None
    capacity: Sample | None = None
    demand: Sample | None = None
    # the canary's and the Service's request rates, when analysis measures the traffic share
    share: ShareReading | None = None

    def counts(self) -> Counts:
        """Spec and Ready replicas of both versions."""
        return Counts(
            canary_spec=self.canary.spec_replicas,
            canary_ready=self.canary.ready_replicas,
            stable_spec=self.stable.spec_replicas,
            stable_ready=self.stable.ready_replicas,
        )


# --------------------------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True)
class Scale:
    """Set a Deployment's replicas (through the scale subresource)."""

    role: DeploymentRole
    deployment: str
    replicas: int


@dataclass(frozen=True)
class PatchService:
    """Set the Service selector and persist the state in the same patch."""

    selector: Mapping[str, str]


@dataclass(frozen=True)
class Persist:
    """Write the state (the annotation) and nothing else."""


@dataclass(frozen=True)
class DeleteDeployment:
    """Delete a Deployment (stable, after retention, when configured).

    Only the incarnation `uid` (the API server refuses the delete if the name now belongs to
    another one); "" when unknown.
    """

    role: DeploymentRole
    deployment: str
    uid: str = ""


@dataclass(frozen=True)
class RunPreflight:
    """Run the preflight checks and call again with their result."""


@dataclass(frozen=True)
class Wait:
    """Nothing to do until `until` (None: until something changes).

    `fresh_after`: what is awaited is an analysis evaluated at or after this time (the end of a
    hold or bake); the shell asks the analysis runner for one at once instead of waiting for
    its next scheduled evaluation.
    """

    until: datetime | None
    fresh_after: datetime | None = None


Action = Scale | PatchService | Persist | DeleteDeployment | RunPreflight | Wait


class EventType(StrEnum):
    """Kubernetes Event types."""

    NORMAL = "Normal"
    WARNING = "Warning"


_N, _W = EventType.NORMAL, EventType.WARNING


class DecisionKind(Enum):
    """A decision people hear about: its record's name, its Event's reason and type.

    The shell keys on the kind (the rollbacks metric, say), never on an Event's wording, so a
    reworded reason cannot silently change what is counted.
    """

    STARTED = ("started", "RolloutStarted", _N)
    PREFLIGHT_WAITING = ("preflight-waiting", "PreflightWaiting", _N)
    PREFLIGHT_PASSED = ("preflight-passed", "PreflightPassed", _N)
    PREFLIGHT_FAILED = ("preflight-failed", "PreflightFailed", _W)
    SELECT_SHARED = ("select-shared", "SelectShared", _N)
    STEP_REACHED = ("step-reached", "StepReached", _N)
    HOLD = ("hold", "Hold", _N)
    HOLD_RELEASED = ("hold-released", "HoldReleased", _N)
    PAUSED_AT_MAX_HOLD = ("paused", "RolloutPaused", _W)
    MANUAL_GATE = ("manual-gate", "ManualGate", _N)
    ADVANCE = ("advance", "StepAdvanced", _N)
    FLIP = ("flip", "FlipStarted", _N)
    FLIPPED = ("flipped", "SelectorFlipped", _N)
    REPINNED = ("flipped", "Flipped", _N)  # the pinned selector restored during the bake
    BAKE_STARTED = ("bake-started", "BakeStarted", _N)
    BAKE_PASSED = ("bake-passed", "BakePassed", _N)
    RETENTION_STARTED = ("retention-started", "RetentionStarted", _N)
    STABLE_DELETED = ("delete-stable", "StableDeleted", _N)
    COMPLETED = ("completed", "RolloutCompleted", _N)
    # retention over, but the stable Deployment was replaced since it started: not deleted
    COMPLETED_STABLE_KEPT = ("completed", "StableNotDeleted", _W)
    ROLLBACK = ("rollback", "RollbackStarted", _W)
    SELECT_STABLE = ("select-stable", "SelectStable", _N)
    ROLLED_BACK = ("rolled-back", "RolledBack", _W)
    FAILED = ("failed", "Failed", _W)
    PAUSED = ("paused", "RolloutPaused", _N)  # by a person (or an alert)
    RESUMED = ("resumed", "RolloutResumed", _N)
    PROMOTED = ("promoted", "RolloutPromoted", _N)
    PROMOTE_REFUSED = ("promote-refused", "CommandRefused", _W)
    ABORT_REFUSED = ("abort-refused", "CommandRefused", _W)
    PAUSE_REFUSED = ("pause-refused", "CommandRefused", _W)
    RESUME_REFUSED = ("resume-refused", "CommandRefused", _W)
    RETRY_REFUSED = ("retry-refused", "CommandRefused", _W)

    def __init__(self, decision: str, event_reason: str, event_type: EventType) -> None:
        self.decision = decision  # the decision record's name
        self.event_reason = event_reason
        self.event_type = event_type

    @classmethod
    def refused(cls, command: CommandKind) -> DecisionKind:
        """The refusal of `command`."""
        return cls[f"{command.name}_REFUSED"]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit on the Service: a decision's kind and its message."""

    kind: DecisionKind
    message: str

    @property
    def type(self) -> EventType:
        return self.kind.event_type

    @property
    def reason(self) -> str:
        return self.kind.event_reason


@dataclass(frozen=True)
class Decision:
    """One action, the state to persist with it, why, and the event to emit."""

    action: Action
    state: RolloutState
    reason: str
    event: Event | None = None
