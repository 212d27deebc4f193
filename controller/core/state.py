"""The persisted rollout state and its versioned JSON codec.

The state lives in an annotation on the Service (``ptc.dev/state``), so the selector flip and
its record are one patch. The codec is versioned: a state written by a newer ptc is refused
with a clear message rather than misread.

The annotation holds what resuming needs, within a fixed size whatever the config: the API
server refuses a Service whose annotations exceed 256 KiB (and then every state write fails,
the one starting a rollback included), and each patch is sent to every Service watcher. So
`compact` keeps the last `HISTORY_LIMIT` decisions with their reasons cut to `REASON_LIMIT`,
and metric readings only on the newest record that has them, as far as they fit
`METRICS_BUDGET`. The full history with every reading goes to a ConfigMap
(`controller.shell.history`), and each decision that changes phase is an Event. Per-metric
breach clocks (`BreachClocks`) are kept so that a restart does not give a breaching canary a
fresh ``for:``. States written by older ptc (50 records with every reading) still decode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

STATE_ANNOTATION = "ptc.dev/state"
COMMAND_ANNOTATION = "ptc.dev/command"
STATE_VERSION = 1
HISTORY_LIMIT = 10  # decisions the annotation keeps (the newest)
REASON_LIMIT = 200  # encoded bytes of a reason, message or other text the annotation keeps
METRICS_BUDGET = 3 * 1024  # encoded bytes of metric readings the newest record may carry


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


@dataclass(frozen=True)
class MetricRecord:
    """One metric's evaluation as recorded in a decision."""

    name: str
    verdict: str
    value: float | None = None
    stable: float | None = None
    threshold: str = ""
    detail: str = ""


@dataclass(frozen=True)
class DecisionRecord:
    """What was decided, when, why, and from which values."""

    at: datetime
    phase: str
    step: int
    decision: str
    reason: str
    metrics: tuple[MetricRecord, ...] = ()
    by: str = "ptc"
    # the canary's observed share of requests (percent) when the decision was taken, if measured
    weight_observed: float | None = None


@dataclass(frozen=True)
class BreachClocks:
    """When each breaching metric's ``for:`` clock started, for one attempt and step.

    A restarted controller restores them only into the same attempt and step: another attempt
    or step is judged afresh, as the running controller would.
    """

    attempt: int
    step: int
    since: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutState:
    """Everything a restarted controller needs to resume a rollout where it was."""

    phase: Phase
    target: str  # hash of what is being rolled out (service, stable, canary): a new one restarts
    rollout: str = ""  # the rollout's name in the config (so `ptc promote NAME` finds it)
    stable: str = ""  # the Deployments, for status readers that have no config
    canary: str = ""
    steps: int = 0
    spec_hash: str = ""
    step: int = 0
    replicas: int | None = None  # N, resolved when the rollout starts
    shared_selector: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 1
    started_at: datetime | None = None
    phase_since: datetime | None = None
    step_reached_at: datetime | None = None  # the step's split is in place; its hold runs
    holding_since: datetime | None = None  # held past the hold (gate closed, no verdict)
    hold_kind: str | None = None  # what the current hold waits on: analysis or capacity
    weight: float = 0.0  # canary weight of the split in place (percent; 100 after the flip)
    hold_until: datetime | None = None  # when the current hold, bake or retention ends
    promoted_step: int | None = None  # a `promote` skipped this step's hold or gate
    paused_from: Phase | None = None
    flipped_at: datetime | None = None
    bake_started_at: datetime | None = None
    scaled_down_at: datetime | None = None
    # The stable Deployment's uid when retention started: only that one is deleted after it.
    # None: unknown (no stable then, or a state from a ptc that did not record it).
    stable_uid: str | None = None
    finished_at: datetime | None = None
    # The phase a `failed` rollout failed in: preflight or pending means no traffic moved, so
    # `retry` is free (no cooldown, no attempt). None: unknown (states from older ptc), or not
    # failed.
    failed_in: Phase | None = None
    message: str = ""  # why the rollout is where it is, for people
    last_command: str | None = None  # id of the last command applied (exactly once)
    writer: str | None = None  # identity of the controller that wrote this
    breach: BreachClocks | None = None  # the analysis's `for:` clocks, restored on restart
    history: tuple[DecisionRecord, ...] = ()

    def with_record(self, record: DecisionRecord, **changes: Any) -> RolloutState:
        """A copy with `changes` applied and `record` appended to the bounded history."""
        history = (*self.history, record)[-HISTORY_LIMIT:]
        return replace(self, history=history, **changes)


def _size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


TAIL = 40  # characters a cut text keeps from its end (e.g. an alert command's " [alert-id]")


def _cut(text: str, limit: int = REASON_LIMIT) -> str:
    """`text` with its middle replaced by an ellipsis until its JSON encoding fits `limit`.

    The end is kept: a command's id is appended to its reason, and duplicate alerts are
    recognised by it.
    """
    if _size(text) <= limit:
        return text
    tail = text[-TAIL:] if _size(text[-TAIL:]) <= limit // 2 else ""
    head = text[:limit]
    while (excess := _size(head + "\u2026" + tail) - limit) > 0:
        head = head[: -max(1, excess // 6)]  # a character encodes to at most 6 bytes
    return head + "\u2026" + tail


def cut_text(text: str) -> str:
    """`text` as the annotation keeps it (see `_cut`)."""
    return _cut(text)


def _metric_json(m: MetricRecord) -> dict[str, Any]:
    return {**asdict(m), "detail": _cut(m.detail)}


def compact(state: RolloutState) -> RolloutState:
    """The state as the annotation keeps it: bounded whatever the history and the metrics.

    The last `HISTORY_LIMIT` records, reasons cut to `REASON_LIMIT`; metric readings on the
    newest record that has them only, as many as fit `METRICS_BUDGET` (in config order).
    """
    history = state.history[-HISTORY_LIMIT:]
    # The newest readings, wherever they are (`ptc status` shows them without a controller).
    newest = max((i for i, r in enumerate(history) if r.metrics), default=-1)
    records = []
    for i, r in enumerate(history):
        metrics: list[MetricRecord] = []
        if i == newest:
            used = 0
            for m in r.metrics:
                kept = replace(
                    m, name=_cut(m.name), threshold=_cut(m.threshold), detail=_cut(m.detail)
                )
                used += _size(_metric_json(kept))
                if used > METRICS_BUDGET:
                    break
                metrics.append(kept)
        records.append(
            replace(
                r,
                decision=_cut(r.decision),
                reason=_cut(r.reason),
                by=_cut(r.by),
                metrics=tuple(metrics),
            )
        )
    return replace(state, message=_cut(state.message), history=tuple(records))


def record_json(r: DecisionRecord) -> dict[str, Any]:
    """A decision record as JSON (metric details cut to `REASON_LIMIT`)."""
    out = {
        **asdict(r),
        "at": format_timestamp(r.at),
        "metrics": [_metric_json(m) for m in r.metrics],
    }
    if r.weight_observed is None:
        del out["weight_observed"]  # records without a share reading stay as they were
    return out


_DATETIME_FIELDS = {f.name for f in fields(RolloutState) if "datetime" in str(f.type)}
_INT_FIELDS = {"step": False, "attempt": False, "replicas": True, "promoted_step": True}
_STR_FIELDS = {
    "target": False,
    "spec_hash": False,
    "message": False,
    "last_command": True,
    "writer": True,
    "stable_uid": True,
}


def format_timestamp(value: datetime | None) -> str | None:
    """UTC with a Z (naive means UTC), as the state stores it; None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:  # naive means UTC here, as in `_parse_ts`, not local time
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_ts(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StateError(f"state field {name!r}: expected a timestamp string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise StateError(f"state field {name!r}: bad timestamp {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(value: object, name: str, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateError(f"state field {name!r}: expected an integer, got {value!r}")
    return value


def _str(value: object, name: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise StateError(f"state field {name!r}: expected a string, got {value!r}")
    return value


def _float(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateError(f"state field {name!r}: expected a number, got {value!r}")
    return float(value)


def _phase(value: object, name: str, optional: bool = False) -> Phase | None:
    if value is None and optional:
        return None
    for phase in Phase:
        if value == phase.value:
            return phase
    known = ", ".join(p.value for p in Phase)
    raise StateError(f"state field {name!r}: unknown phase {value!r} (known: {known})")


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StateError(f"state field {name!r}: expected an object, got {value!r}")
    return value


def _list(value: object, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise StateError(f"state field {name!r}: expected a list, got {value!r}")
    return value


def encode_state(state: RolloutState) -> str:
    """The state as compact versioned JSON for the annotation (bounded: see `compact`)."""
    state = compact(state)
    data: dict[str, Any] = {"v": STATE_VERSION}
    for f in fields(state):
        value = getattr(state, f.name)
        if f.name in _DATETIME_FIELDS:
            value = format_timestamp(value)
        elif f.name == "history":
            value = [record_json(r) for r in value]
        elif f.name == "breach":
            value = (
                None
                if value is None
                else {
                    "attempt": value.attempt,
                    "step": value.step,
                    "since": {k: format_timestamp(t) for k, t in sorted(value.since.items())},
                }
            )
        elif f.name == "shared_selector":
            value = dict(value)
        elif isinstance(value, StrEnum):
            value = value.value
        data[_camel(f.name)] = value
    # UTF-8 as is: the API server counts bytes, and \uXXXX escapes would double them.
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def read_state(annotations: Mapping[str, str]) -> RolloutState | None:
    """The state in a Service's annotations; None when there is none, StateError if unreadable."""
    raw = annotations.get(STATE_ANNOTATION)
    return decode_state(raw) if raw else None


def decode_state(text: str) -> RolloutState:
    """Parse an annotation written by `encode_state`; StateError says what is wrong.

    Keys this version does not know are ignored (a same-version writer may add optional ones);
    a known key with a value of the wrong type is an error naming the key.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"state annotation is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, "[[[[..." 200 KB deep
        raise StateError(f"state annotation is not a state: {str(exc)[:80]}") from exc
    if not isinstance(data, dict):
        raise StateError(f"state annotation is not a JSON object: {text[:60]!r}")
    version = data.get("v")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise StateError(
            f"state annotation has no valid version field 'v' (got {version!r}; expected an "
            f"integer from 1 to {STATE_VERSION})"
        )
    if version > STATE_VERSION:
        raise StateError(
            f"state was written by a newer ptc (state version {version}; this ptc reads up to "
            f"{STATE_VERSION}): upgrade ptc, or remove the {STATE_ANNOTATION} annotation to "
            "start over"
        )
    missing = [k for k in ("phase", "target") if k not in data]
    if missing:
        raise StateError(f"state annotation lacks required field(s): {', '.join(missing)}")
    kwargs: dict[str, Any] = {}
    for f in fields(RolloutState):
        key = _camel(f.name)
        if key not in data:
            continue
        value = data[key]
        if f.name in _DATETIME_FIELDS:
            value = _parse_ts(value, key)
        elif f.name in ("phase", "paused_from", "failed_in"):
            value = _phase(value, key, optional=f.name != "phase")
        elif f.name in _INT_FIELDS:
            value = _int(value, key, _INT_FIELDS[f.name])
        elif f.name in _STR_FIELDS:
            value = _str(value, key, _STR_FIELDS[f.name])
        elif f.name == "history":
            value = tuple(
                decode_record(r, f"history[{i}]") for i, r in enumerate(_list(value, key))
            )
        elif f.name == "breach":
            value = None if value is None else _decode_breach(value, key)
        elif f.name == "shared_selector":
            selector = _object(value, key)
            value = {str(k): _str(v, f"{key}.{k}") for k, v in selector.items()}
        kwargs[f.name] = value
    return RolloutState(**kwargs)


def _decode_breach(raw: object, where: str) -> BreachClocks:
    data = _object(raw, where)
    for key in ("attempt", "step", "since"):
        if key not in data:
            raise StateError(f"state field {where!r}: lacks {key!r}")
    since: dict[str, datetime] = {}
    for name, ts in _object(data["since"], f"{where}.since").items():
        parsed = _parse_ts(ts, f"{where}.since.{name}")
        if parsed is None:
            raise StateError(f"state field '{where}.since.{name}': expected a timestamp string")
        since[str(name)] = parsed
    return BreachClocks(
        attempt=int(_int(data["attempt"], f"{where}.attempt") or 0),
        step=int(_int(data["step"], f"{where}.step") or 0),
        since=since,
    )


def decode_record(raw: object, where: str) -> DecisionRecord:
    """A decision record from `record_json`'s shape; StateError names `where` if it is bad."""
    record = _object(raw, where)
    for key in ("at", "phase", "step", "decision", "reason"):
        if key not in record:
            raise StateError(f"state field {where!r}: lacks {key!r}")
    at = _parse_ts(record["at"], f"{where}.at")
    if at is None:
        raise StateError(f"state field '{where}.at': expected a timestamp string, got None")
    metrics = []
    for j, m in enumerate(_list(record.get("metrics", []), f"{where}.metrics")):
        mw = f"{where}.metrics[{j}]"
        mr = _object(m, mw)
        for key in ("name", "verdict"):
            if key not in mr:
                raise StateError(f"state field {mw!r}: lacks {key!r}")
        metrics.append(
            MetricRecord(
                name=str(_str(mr["name"], f"{mw}.name")),
                verdict=str(_str(mr["verdict"], f"{mw}.verdict")),
                value=_float(mr.get("value"), f"{mw}.value"),
                stable=_float(mr.get("stable"), f"{mw}.stable"),
                threshold=str(_str(mr.get("threshold", ""), f"{mw}.threshold")),
                detail=str(_str(mr.get("detail", ""), f"{mw}.detail")),
            )
        )
    return DecisionRecord(
        at=at,
        phase=str(_str(record["phase"], f"{where}.phase")),
        step=int(_int(record["step"], f"{where}.step") or 0),
        decision=str(_str(record["decision"], f"{where}.decision")),
        reason=str(_str(record["reason"], f"{where}.reason")),
        metrics=tuple(metrics),
        by=str(_str(record.get("by", "ptc"), f"{where}.by")),
        weight_observed=_float(record.get("weight_observed"), f"{where}.weight_observed"),
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)
