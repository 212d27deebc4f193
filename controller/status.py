"""Rollout status for people: the document /api/v1/rollouts and `ptc status` show, and its table.

The document (JSON) has, per rollout: ``name``, ``namespace``, ``service``, ``stable``,
``canary``, ``phase``, ``step`` (0-based) and ``steps``, ``attempt``, ``message`` (why it is
where it is), ``waiting`` (what it waits on right now), ``weight`` {``desired``, ``actual``,
``observed``} (percent; actual = canary's share of Ready endpoints, observed = its share of
requests measured by ``analysis.trafficShare``, null when not measured), ``replicas``
{``stable``, ``canary``: {``spec``, ``ready``}}, ``selector``, ``hold`` {``since``,
``until``, ``progress``} or null,
``analysis`` {``at``, ``verdict``, ``metrics``: [{``name``, ``verdict``, ``value``,
``stable``, ``threshold``, ``reason``}]} or null, ``decisions`` (the last ten records),
``writer``, ``configGeneration``, ``pendingConfig``; from the controller only, ``problem`` (what
a person must fix: an API request refused, the Service missing, a state it cannot read) and ``lag``
{``reconcileSeconds``, ``evaluationSeconds``, ``intervalSeconds``} (see :mod:`controller.lag`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from controller.lag import lag_caption
from controller.state import Phase, RolloutState, format_timestamp

VERDICT_MARK = {"pass": "✓", "fail": "✗", "inconclusive": "?", "error": "!"}
PHASE_STYLE = {
    "completed": "green",
    "rolled-back": "red",
    "rolling-back": "red",
    "failed": "red",
    "paused": "yellow",
    "holding": "yellow",
}


# Timestamps read the way the state writes them.
iso = format_timestamp


def parse_iso(value: str | None) -> datetime | None:
    """The inverse of `iso` (None stays None)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def hold_window(state: RolloutState | None) -> tuple[datetime, datetime] | None:
    """The running hold, bake or retention window, if any."""
    if state is None or state.hold_until is None:
        return None
    if state.phase in (Phase.PROGRESSING, Phase.HOLDING) and state.step_reached_at:
        return state.step_reached_at, state.hold_until
    if state.phase is Phase.BAKING and state.bake_started_at:
        return state.bake_started_at, state.hold_until
    if state.phase is Phase.SCALING_DOWN and state.scaled_down_at:
        return state.scaled_down_at, state.hold_until
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
) -> dict[str, Any]:
    """One rollout's status document (see the module docstring)."""
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
            "desired": state.weight if state else 0.0,
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
                "metrics": [
                    {
                        "name": m.name,
                        "verdict": m.verdict,
                        "value": m.value,
                        "threshold": m.threshold,
                    }
                    for m in r.metrics
                ],
            }
            for r in (state.history[-10:] if state else ())
        ],
        "writer": state.writer if state else None,
        "configGeneration": generation,
        "pendingConfig": pending_config,
        "problem": problem,
        **({"lag": dict(lag)} if lag is not None else {}),
    }


def _analysis_from_history(state: RolloutState) -> dict[str, Any] | None:
    """Without a live analysis, the metrics recorded with the latest decision that had them."""
    for record in reversed(state.history):
        if record.metrics:
            return {
                "at": iso(record.at),
                "verdict": None,
                "metrics": [
                    {
                        "name": m.name,
                        "verdict": m.verdict,
                        "value": m.value,
                        "stable": m.stable,
                        "threshold": m.threshold,
                        "reason": m.detail,
                    }
                    for m in record.metrics
                ],
            }
    return None


# ---------------------------------------------------------------------------------------------
# Rendering


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics_cell(doc: Mapping[str, Any]) -> Text:
    analysis = doc.get("analysis") or {}
    text = Text()
    for i, m in enumerate(analysis.get("metrics") or ()):
        if i:
            text.append("\n")
        verdict = m.get("verdict") or ""
        style = {"pass": "green", "fail": "red"}.get(verdict, "yellow")
        text.append(f"{VERDICT_MARK.get(verdict, ' ')} ", style=style)
        text.append(f"{m['name']} {_fmt(m.get('value'))} {m.get('threshold') or ''}")
    return text


def _hold_cell(doc: Mapping[str, Any], now: datetime) -> Text:
    hold = doc.get("hold")
    if not hold:
        return Text("-")
    until = parse_iso(hold["until"])
    left = max(0, int((until - now).total_seconds())) if until else 0
    filled = round(float(hold["progress"]) * 10)
    text = Text("█" * filled, style="cyan")
    text.append("░" * (10 - filled), style="dim")
    text.append(f" {left}s left")
    return text


def _weight_cell(weight: Mapping[str, Any]) -> str:
    cell = f"{_fmt(weight.get('desired'))}% / {_fmt(weight.get('actual'))}%"
    if weight.get("observed") is not None:
        cell += f"\nrequests {_fmt(weight['observed'])}%"
    return cell


def status_table(docs: Sequence[Mapping[str, Any]], now: datetime) -> Table:
    """The rollouts as one table: phase, step, weight, hold, analysis, what it waits on."""
    table = Table(
        title=f"ptc rollouts at {iso(now)}",
        title_justify="left",
        expand=False,
        caption=lag_caption(docs),
        caption_justify="left",
    )
    columns = ("rollout", "phase", "driver", "step", "weight d/a", "hold", "analysis", "waiting on")
    for col in columns:
        # the rollout's names stay whole: people search the output for them
        table.add_column(col, overflow="fold", no_wrap=col == "rollout")
    for doc in docs:
        phase = doc.get("phase") or "-"
        step = doc.get("step")
        steps = doc.get("steps") or 0
        if step is None:
            step_text = "-"
        elif not steps:  # a state from before ptc recorded the step count
            step_text = str(step + 1)
        else:
            step_text = "flip" if step >= steps else f"{step + 1}/{steps}"
        weight = doc.get("weight") or {}
        table.add_row(
            f"{doc['namespace']}/{doc['name']}\n{doc['stable']} → {doc['canary']}",
            Text(phase, style=PHASE_STYLE.get(phase, "cyan")),
            doc.get("writer") or "-",  # the replica that wrote the state: who drives it
            step_text,
            _weight_cell(weight),
            _hold_cell(doc, now),
            _metrics_cell(doc),
            Text(f"PROBLEM: {doc['problem']}", style="bold red")
            if doc.get("problem")
            else doc.get("waiting") or doc.get("message") or "",
        )
    return table


def shards_table(controller: Mapping[str, Any]) -> Table:
    """A sharded controller's view: each shard's Lease and holder (``ptc status --controller``)."""
    me = controller.get("identity")
    table = Table(
        title=f"shards as {me} sees them ({len(controller.get('members') or [])} live replicas)",
        title_justify="left",
    )
    for col in ("shard", "lease", "holder", "rollouts"):
        table.add_column(col, overflow="fold")
    for shard in controller.get("shards") or []:
        holder = shard.get("holder") or "-"
        table.add_row(
            str(shard["shard"]),
            shard["lease"],
            Text(holder, style="bold") if holder == me else holder,
            str(shard.get("rollouts", 0)),
        )
    return table


def decisions_table(doc: Mapping[str, Any], limit: int = 5) -> Table:
    """The rollout's latest decisions."""
    table = Table(title=f"{doc['name']}: last decisions", title_justify="left")
    for col in ("at", "step", "decision", "by", "reason"):
        table.add_column(col, overflow="fold")
    for d in (doc.get("decisions") or [])[-limit:]:
        at = (d.get("at") or "")[11:19]
        step = d.get("step")
        table.add_row(
            at, str(step + 1 if step is not None else "-"), d["decision"], d["by"], d["reason"]
        )
    return table


def render_text(
    docs: Sequence[Mapping[str, Any]], now: datetime, *, width: int = 140, color: bool = False
) -> str:
    """The status view as plain text (snapshot tests, non-TTY output)."""
    console = Console(
        width=width, record=True, color_system="standard" if color else None, file=io.StringIO()
    )
    console.print(status_table(docs, now))
    for doc in docs:
        console.print(decisions_table(doc))
    return console.export_text()
