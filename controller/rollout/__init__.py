"""The rollout state machine (pure). See `controller.rollout.machine` for the phases."""

from controller.rollout.context import (
    ACTIVE_TRAFFIC_PHASES,
    pinned_selector,
    shared_selector,
    target_hash,
)
from controller.rollout.machine import decide
from controller.rollout.types import (
    Action,
    Command,
    CommandKind,
    Decision,
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
    "Wait",
    "decide",
    "pinned_selector",
    "shared_selector",
    "target_hash",
]
