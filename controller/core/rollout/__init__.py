"""The rollout state machine (pure). See `controller.core.rollout.machine` for the phases."""

from controller.core.rollout.context import (
    ACTIVE_TRAFFIC_PHASES,
    pinned_selector,
    shared_selector,
    target_hash,
)
from controller.core.rollout.machine import decide
from controller.core.rollout.reload import SpecChange, spec_change, waits_for_rollout_in_flight
from controller.core.rollout.types import (
    Action,
    Command,
    CommandKind,
    Decision,
    DecisionKind,
    DeleteDeployment,
    DeploymentView,
    Endpoints,
    Event,
    EventType,
    Observed,
    PatchService,
    Persist,
    PreflightResult,
    RunPreflight,
    Scale,
    Wait,
)

__all__ = [
    "ACTIVE_TRAFFIC_PHASES",
    "Action",
    "Command",
    "CommandKind",
    "Decision",
    "DecisionKind",
    "DeleteDeployment",
    "DeploymentView",
    "Endpoints",
    "Event",
    "EventType",
    "Observed",
    "PatchService",
    "Persist",
    "PreflightResult",
    "RunPreflight",
    "Scale",
    "SpecChange",
    "Wait",
    "decide",
    "pinned_selector",
    "shared_selector",
    "spec_change",
    "target_hash",
    "waits_for_rollout_in_flight",
]
