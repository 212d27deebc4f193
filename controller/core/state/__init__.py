"""The persisted rollout state: its shape (`model`), bounds (`bounds`), codec (`codec`) and the
migration from state v1 (`migrate`).

The state lives in an annotation on the Service (``ptc.dev/state``), so the selector flip and
its record are one patch. It holds what resuming needs, within a fixed size whatever the
config (see `bounds`); the full decision history goes to a ConfigMap
(`controller.shell.history`), and each decision that changes phase is an Event. Per-metric
breach clocks (`BreachClocks`) are kept so that a restart does not give a breaching canary a
fresh ``for:``.
"""

from controller.core.state.bounds import METRICS_BUDGET, REASON_LIMIT, compact, cut_text
from controller.core.state.codec import (
    COMMAND_ANNOTATION,
    STATE_ANNOTATION,
    STATE_VERSION,
    decode_record,
    decode_state,
    encode_state,
    read_state,
    record_json,
)
from controller.core.state.model import (
    HISTORY_LIMIT,
    Bake,
    BreachClocks,
    DecisionRecord,
    End,
    Hold,
    Holding,
    HoldKind,
    Identity,
    MetricRecord,
    Pause,
    Phase,
    Progress,
    Retention,
    RolloutState,
    StateError,
    format_timestamp,
    parse_timestamp,
)

__all__ = [
    "COMMAND_ANNOTATION",
    "HISTORY_LIMIT",
    "METRICS_BUDGET",
    "REASON_LIMIT",
    "STATE_ANNOTATION",
    "STATE_VERSION",
    "Bake",
    "BreachClocks",
    "DecisionRecord",
    "End",
    "Hold",
    "HoldKind",
    "Holding",
    "Identity",
    "MetricRecord",
    "Pause",
    "Phase",
    "Progress",
    "Retention",
    "RolloutState",
    "StateError",
    "compact",
    "cut_text",
    "decode_record",
    "decode_state",
    "encode_state",
    "format_timestamp",
    "parse_timestamp",
    "read_state",
    "record_json",
]
