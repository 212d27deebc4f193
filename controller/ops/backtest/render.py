"""A backtest's result as a plain-text table or JSON (pure: strings and dicts).

The table is plain aligned text, not a terminal widget: thousands of rows are piped to files
and grepped, and must not wrap at whatever width the terminal happens to have.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from controller.core.analysis.evaluate import CapacityResult, MetricResult, Verdict
from controller.core.config.model import Side
from controller.core.durations import format_duration
from controller.ops.backtest.model import BacktestResult, MetricOutcome, Outcome, TickResult
from controller.ops.backtest.selectors import Bindings


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


class _Clock:
    """Formats tick times: time of day when the period is within one UTC day."""

    def __init__(self, start: datetime, end: datetime) -> None:
        one_day = start.date() == end.date()
        millis = start.microsecond != 0
        self.fmt = ("%H:%M:%S" if one_day else "%Y-%m-%d %H:%M:%S") + (".%f" if millis else "")
        self.trim = 3 if millis else 0

    def __call__(self, at: datetime | None) -> str:
        if at is None:
            return "-"
        text = at.strftime(self.fmt)
        return text[: -self.trim] if self.trim else text


def _since(at: datetime, since: datetime | None) -> str:
    return f" breach {format_duration(at - since)}" if since is not None else ""


def metric_cell(result: MetricResult, at: datetime) -> str:
    """``verdict value (s stable)`` and, while a breach runs, how long it has lasted."""
    stable = f" (s {_num(result.stable)})" if result.stable is not None else ""
    breach = _since(at, result.breach_since) if result.verdict is not Verdict.PASS else ""
    return f"{result.verdict.value} {_num(result.value)}{stable}{breach}"


def capacity_cell(result: CapacityResult | None) -> str:
    """The capacity gate's reading for the next shift."""
    if result is None:
        return "-"
    if result.needed is None:
        what = "query failed" if result.verdict is Verdict.ERROR else result.reason
        return f"{result.verdict.value} ({what})"
    op = ">=" if result.verdict is Verdict.PASS else "<"
    return f"{result.verdict.value} {_num(result.capacity)} {op} {_num(result.needed)}"


def _align(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _binding_text(bindings: Bindings, side: Side, derived: str) -> str:
    b = bindings.for_side(side)
    return b.text if b.bound else derived


def header_lines(result: BacktestResult) -> list[str]:
    """What was replayed: rollout, step, period, ticks, series, metrics and thresholds."""
    spec = result.spec
    rollout, analysis = spec.rollout, spec.analysis
    step = rollout.steps[spec.step]
    ticks = len(result.ticks)
    lines = [
        f"backtest of rollout {rollout.name} (namespace {rollout.namespace}), step "
        f"{spec.step + 1}/{len(rollout.steps)} at {step.weight:g}%",
        f"period {spec.start:%Y-%m-%d %H:%M:%S} -> {spec.end:%Y-%m-%d %H:%M:%S} UTC, every "
        f"{format_duration(spec.every)}: {ticks} tick{'s' if ticks != 1 else ''}; window "
        f"{format_duration(analysis.window)}, minRequests {analysis.min_requests}",
        f"series: canary "
        f"{_binding_text(spec.bindings, Side.CANARY, rollout.canary.deployment + ' pods')}, "
        f"stable {_binding_text(spec.bindings, Side.STABLE, rollout.stable.deployment + ' pods')}"
        f"; from Prometheus {result.prometheus}",
        "metrics:",
    ]
    width = max(len(m.name) for m in analysis.metrics)
    for outcome, metric in zip(result.summary.metrics, analysis.metrics, strict=True):
        threshold = outcome.threshold or "-"
        lines.append(
            f"  {metric.name.ljust(width)}  {threshold}  for {format_duration(metric.for_)}"
        )
    gate = analysis.capacity_gate
    if gate is not None:
        lines.append(
            f"capacity gate: canary capacity vs demand x {spec.next_weight:g}% (the next shift) "
            f"x headroom {gate.headroom:g}"
        )
    return lines


def tick_rows(result: BacktestResult) -> list[str]:
    """One aligned row per tick: time, overall verdict, each metric, the capacity gate."""
    clock = _Clock(result.spec.start, result.spec.end)
    names = [m.name for m in result.spec.analysis.metrics]
    gate = result.spec.analysis.capacity_gate is not None
    head = ["time (UTC)", "verdict", *names] + (["capacity"] if gate else [])
    rows: list[list[str]] = [head]
    for tick in result.ticks:
        by_name = {m.name: m for m in tick.summary.metrics}
        row = [clock(tick.at), tick.summary.verdict.value]
        row += [metric_cell(by_name[n], tick.at) if n in by_name else "-" for n in names]
        if gate:
            row.append(capacity_cell(tick.capacity))
        rows.append(row)
    return _align(rows)


def _counts(counts: dict[str, int]) -> str:
    return "/".join(str(counts.get(v.value, 0)) for v in Verdict)


def summary_lines(result: BacktestResult) -> list[str]:
    """First pass / hold / fail per metric, their reasons, and what ptc would have done."""
    clock = _Clock(result.spec.start, result.spec.end)
    summary = result.summary
    rows = [["metric", "first pass", "first hold", "first fail", "ticks pass/inconcl/error/fail"]]
    for m in summary.metrics:
        firsts = [clock(m.first_pass), clock(m.first_hold), clock(m.first_fail)]
        rows.append([m.name, *firsts, _counts(m.counts)])
    lines = _align(rows)
    for m in summary.metrics:
        lines += _reasons(m, clock)
    gate = result.spec.analysis.capacity_gate is not None
    if gate:
        lines.append(
            f"capacity gate: first open {clock(summary.capacity_first_pass)}, first closed "
            f"{clock(summary.capacity_first_hold)}"
        )
    lines.append("")
    lines += outcome_lines(result)
    return lines


def _reasons(m: MetricOutcome, clock: _Clock) -> list[str]:
    out = []
    if m.first_hold is not None:
        out.append(f"  {m.name} first held at {clock(m.first_hold)}: {m.hold_reason}")
    if m.first_fail is not None:
        began = f" (breach since {clock(m.breach_since)})" if m.breach_since else ""
        out.append(f"  {m.name} first failed at {clock(m.first_fail)}{began}: {m.fail_reason}")
    return out


def _outcome(o: Outcome) -> str:
    verb = "rolled back" if o.action == "rollback" else "paused for a human"
    return f"would have {verb} at {o.at:%Y-%m-%d %H:%M:%S} UTC: {o.reason}"


def outcome_lines(result: BacktestResult) -> list[str]:
    """The answer: when ptc would have rolled back (or paused), or that it would not have."""
    summary = result.summary
    lines = []
    if summary.rollback is not None:
        lines.append("rollback: " + _outcome(summary.rollback))
    else:
        lines.append("rollback: none - no tick failed")
    if summary.max_hold is not None:
        lines.append("maxHold: " + _outcome(summary.max_hold))
    counts = summary.counts
    lines.append(
        f"ticks: {counts.get('pass', 0)} pass, {counts.get('inconclusive', 0)} inconclusive, "
        f"{counts.get('error', 0)} error, {counts.get('fail', 0)} fail "
        f"({len(result.queries)} range queries in {result.fetch_seconds:.2f}s, "
        f"{len(result.ticks)} ticks evaluated in {result.replay_seconds:.2f}s)"
    )
    lines += [f"note: {n}" for n in result.notes]
    return lines


def render_table(result: BacktestResult) -> str:
    """The whole text output: header, one row per tick, the summary."""
    return "\n".join([*header_lines(result), "", *tick_rows(result), "", *summary_lines(result)])


# -- JSON ---------------------------------------------------------------------------------


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


def _tick_json(tick: TickResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": _iso(tick.at),
        "verdict": tick.summary.verdict.value,
        "metrics": [
            {**m.to_json(), "breachSince": _iso(m.breach_since)} for m in tick.summary.metrics
        ],
    }
    if tick.capacity is not None:
        c = tick.capacity
        out["capacity"] = {
            "verdict": c.verdict.value,
            "capacity": c.capacity,
            "demand": c.demand,
            "needed": c.needed,
            "reason": c.reason,
        }
    return out


def _outcome_json(o: Outcome | None) -> dict[str, Any] | None:
    return None if o is None else {"at": _iso(o.at), "action": o.action, "reason": o.reason}


def to_json(result: BacktestResult) -> dict[str, Any]:
    """The whole result as JSON-ready data (camelCase keys, RFC 3339 UTC times)."""
    spec = result.spec
    analysis = spec.analysis
    s = result.summary
    return {
        "rollout": spec.rollout.name,
        "namespace": spec.rollout.namespace,
        "step": spec.step + 1,
        "steps": len(spec.rollout.steps),
        "weight": spec.rollout.steps[spec.step].weight,
        "nextWeight": spec.next_weight,
        "from": _iso(spec.start),
        "to": _iso(spec.end),
        "every": format_duration(spec.every),
        "interval": format_duration(analysis.interval),
        "window": format_duration(analysis.window),
        "minRequests": analysis.min_requests,
        "prometheus": result.prometheus,
        "series": {
            side.value: spec.bindings.for_side(side).text or None
            for side in (Side.CANARY, Side.STABLE, Side.SERVICE)
        },
        "queries": list(result.queries),
        "metrics": [{"name": m.name, "for": format_duration(m.for_)} for m in analysis.metrics],
        "ticks": [_tick_json(t) for t in result.ticks],
        "summary": {
            "counts": s.counts,
            "metrics": [
                {
                    "name": m.name,
                    "threshold": m.threshold,
                    "firstPass": _iso(m.first_pass),
                    "firstHold": _iso(m.first_hold),
                    "firstFail": _iso(m.first_fail),
                    "breachSince": _iso(m.breach_since),
                    "holdReason": m.hold_reason or None,
                    "failReason": m.fail_reason or None,
                    "counts": m.counts,
                }
                for m in s.metrics
            ],
            "rollback": _outcome_json(s.rollback),
            "maxHold": _outcome_json(s.max_hold),
            "firstAction": _outcome_json(s.first_action),
            "capacity": {
                "firstPass": _iso(s.capacity_first_pass),
                "firstHold": _iso(s.capacity_first_hold),
            },
        },
        "notes": list(result.notes),
        "timing": {
            "fetchSeconds": round(result.fetch_seconds, 3),
            "replaySeconds": round(result.replay_seconds, 3),
        },
    }


__all__ = ["capacity_cell", "metric_cell", "render_table", "to_json"]
