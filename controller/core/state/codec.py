"""The state's versioned JSON codec, through pydantic (strict types, paths in every error).

The annotation is ``{"v": 2, "identity": {...}, "progress": {...}, "hold": {...}, ...}`` with
camelCase keys, UTC timestamps with a Z, and no field at its default (absent means the
default). A state v1 (every ptc before this one wrote it) is read and migrated
(`controller.core.state.migrate`);
a state of a newer version is refused with a clear message rather than misread. Keys this
version does not know are ignored (a same-version writer may add optional ones); a known key
with a value of the wrong type is a `StateError` naming its path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from controller.core.state.bounds import compact, metric_json
from controller.core.state.migrate import STATE_V1
from controller.core.state.model import DecisionRecord, RolloutState, StateError, format_timestamp

STATE_ANNOTATION = "ptc.dev/state"
COMMAND_ANNOTATION = "ptc.dev/command"
STATE_VERSION = 2

_STATE = TypeAdapter(RolloutState)
_RECORD = TypeAdapter(DecisionRecord)


def encode_state(state: RolloutState) -> str:
    """The state as compact versioned JSON for the annotation (bounded: see `compact`)."""
    data = _STATE.dump_python(compact(state), mode="json", by_alias=True, exclude_defaults=True)
    # UTF-8 as is: the API server counts bytes, and \uXXXX escapes would double them.
    return json.dumps({"v": STATE_VERSION, **data}, separators=(",", ":"), ensure_ascii=False)


def read_state(annotations: Mapping[str, str]) -> RolloutState | None:
    """The state in a Service's annotations; None when there is none, StateError if unreadable."""
    raw = annotations.get(STATE_ANNOTATION)
    return decode_state(raw) if raw else None


def decode_state(text: str) -> RolloutState:
    """Parse an annotation written by `encode_state` (or by a ptc that wrote state v1)."""
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
    try:
        if version == 1:
            return STATE_V1.validate_python(data).migrate()
        return _STATE.validate_python(data)
    except ValidationError as exc:
        raise state_error(exc) from None


def decode_record(raw: object, where: str) -> DecisionRecord:
    """A decision record from `record_json`'s shape; StateError names `where` if it is bad."""
    try:
        return _RECORD.validate_python(raw)
    except ValidationError as exc:
        raise state_error(exc, where) from None


def record_json(r: DecisionRecord) -> dict[str, Any]:
    """A decision record as JSON (metric details cut to `REASON_LIMIT`).

    The shape every ptc has written, in the annotation and the history ConfigMap alike.
    """
    out: dict[str, Any] = {
        "at": format_timestamp(r.at),
        "phase": r.phase,
        "step": r.step,
        "decision": r.decision,
        "reason": r.reason,
        "metrics": [metric_json(m) for m in r.metrics],
        "by": r.by,
    }
    if r.weight_observed is not None:  # records without a share reading stay as they were
        out["weight_observed"] = r.weight_observed
    return out


def state_error(exc: ValidationError, where: str = "") -> StateError:
    """The first of pydantic's errors as a StateError naming the field's path."""
    error = exc.errors(include_url=False)[0]
    path = where
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return StateError(f"state field {path!r}: missing")
    if not path:
        return StateError(f"state annotation is not a valid state: {message}")
    # Our own checks (timestamps, invariants) say what they got; pydantic's do not.
    got = "" if error["type"] == "value_error" else f", got {_short(error.get('input'))}"
    return StateError(f"state field {path!r}: {message}{got}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
