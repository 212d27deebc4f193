"""Rollout status for people: the document /api/v1/rollouts and `ptc status` show, and its table.

The document (JSON) has, per rollout: ``name``, ``namespace``, ``service``, ``stable``,
``canary``, ``phase``, ``step`` (0-based) and ``steps``, ``attempt``, ``message`` (why it is
where it is), ``waiting`` (what it waits on right now), ``weight`` {``desired``, ``actual``,
``observed``} (percent; actual = canary's share of Ready endpoints, observed = its share of
requests measured by ``analysis.trafficShare``, null when not measured), ``replicas``
{``stable``, ``canary``: {``spec``, ``ready``}}, ``selector``, ``hold`` {``since``,
``until``, ``progress``} or null,
``analysis`` {``at``, ``verdict``, ``metrics``: [{``name``, ``verdict``, ``value``,
``stable``, ``threshold``, ``reason``}]} or null, ``decisions`` (the last ten records; read
from the cluster, every record of the history ConfigMap and the annotation, oldest first),
``writer``, ``configGeneration``, ``pendingConfig``; from the controller only, ``problem`` (what
a person must fix: an API request refused, the Service missing, a state it cannot read) and ``lag``
{``reconcileSeconds``, ``evaluationSeconds``, ``intervalSeconds``} (see
:mod:`controller.shell.lag`); read from the cluster only, ``history`` {``source``: ``configmap`` or
``annotation``, ``problem``: why the history ConfigMap was not used, or null} (see
:mod:`controller.ops.status_source`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from controller.core.state import DecisionRecord, Phase, RolloutState, format_timestamp

# Timestamps read the way the state writes them.
iso = format_timestamp


def parse_iso(value: str | None) -> datetime | None:
    """The inverse of `iso` (None stays None)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def hold_window(state: RolloutState | None) -> tuple[datetime, datetime] | None:
    """The running step hold, bake or retention window, if any (not while paused)."""
    if state is None:
        return None
    if state.stepping and state.hold is not None and state.hold.until is not None:
        return state.hold.reached_at, state.hold.until
    bake = state.bake
    if state.phase is Phase.BAKING and bake is not None and bake.started_at and bake.until:
        return bake.started_at, bake.until
    kept = state.retention
    if state.phase is Phase.SCALING_DOWN and kept is not None and kept.until is not None:
        return kept.scaled_down_at, kept.until
    return None


def status_document(
    *,
    name: str,
    namespace: str,
    service: str,
    stable: str,
    canary: str,
    steps: int,
    state: RolloutState | None,
    replicas: Mapping[str, Mapping[str, int]] | None,
    endpoints: Mapping[str, int] | None,
    selector: Mapping[str, str] | None,
    analysis: Mapping[str, Any] | None,
    waiting: str | None,
    problem: str | None,
    now: datetime,
    generation: int = 1,
    pending_config: bool = False,
    lag: Mapping[str, float | None] | None = None,
    observed_share: float | None = None,
    decisions: int | None = 10,
    history_source: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """One rollout's status document (see the module docstring).

    `decisions`: how many of the newest records of ``state.history`` to list (None: all).
    """
    window = hold_window(state)
    hold = None
    if window is not None:
        start, end = window
        span = (end - start).total_seconds()
        done = (now - start).total_seconds()
        hold = {
            "since": iso(start),
            "until": iso(end),
            "progress": round(min(max(done / span, 0.0), 1.0), 3) if span > 0 else 1.0,
        }
    total = (endpoints or {}).get("canary", 0) + (endpoints or {}).get("stable", 0)
    actual = round(100.0 * (endpoints or {}).get("canary", 0) / total, 2) if total else 0.0
    if observed_share is None and state is not None and state.history:
        # Without a live reading (status read from the annotation), the latest decision's.
        observed_share = state.history[-1].weight_observed
    if analysis is None and state is not None:
        analysis = _analysis_from_history(state)
    return {
        "name": name,
        "namespace": namespace,
        "service": service,
        "stable": stable,
        "canary": canary,
        "phase": state.phase.value if state else None,
        "step": state.step if state else None,
        "steps": steps,
        "attempt": state.attempt if state else None,
        "message": state.message if state else (problem or ""),
        "waiting": waiting,
        "weight": {
            "desired": state.progress.weight if state else 0.0,
            "actual": actual,
            "observed": round(observed_share, 2) if observed_share is not None else None,
        },
        "replicas": {k: dict(v) for k, v in (replicas or {}).items()} or None,
        "selector": dict(selector) if selector is not None else None,
        "hold": hold,
        "analysis": dict(analysis) if analysis is not None else None,
        "decisions": [
            {
                "at": iso(r.at),
                "phase": r.phase,
                "step": r.step,
                "decision": r.decision,
                "reason": r.reason,
                "by": r.by,
                **({"weightObserved": r.weight_observed} if r.weight_observed is not None else {}),
                "metrics": [m.to_json() for m in r.metrics],
            }
            for r in _newest(state, decisions)
        ],
        "writer": state.writer if state else None,
        "configGeneration": generation,
        "pendingConfig": pending_config,
        "problem": problem,
        **({"lag": dict(lag)} if lag is not None else {}),
        **({"history": dict(history_source)} if history_source is not None else {}),
    }


def _newest(state: RolloutState | None, count: int | None) -> tuple[DecisionRecord, ...]:
    if state is None:
        return ()
    return state.history if count is None else state.history[len(state.history) - count :]


def _analysis_from_history(state: RolloutState) -> dict[str, Any] | None:
    """Without a live analysis, the metrics recorded with the latest decision that had them."""
    for record in reversed(state.history):
        if record.metrics:
            return {
                "at": iso(record.at),
                "verdict": None,
                "metrics": [m.to_json() for m in record.metrics],
            }
    return None


# ---------------------------------------------------------------------------------------------
# Rendering
