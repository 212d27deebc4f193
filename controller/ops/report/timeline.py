"""The rollout timeline: persisted state (+ optional Prometheus series) -> a plottable model.

Pure: no I/O, no plotting library. Everything the renderer draws and the HTML table lists is
decided here, so it is tested on handcrafted states.

The record's ``phase`` is the phase the rollout was in when the decision was taken (before the
transition it records), so the phase *between* two records is the later record's phase, and
after the last record it is the state's current phase.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.core.analysis.evaluate import threshold_text
from controller.core.config.model import Metric, Rollout
from controller.core.plan import Limits, place_step
from controller.core.state import HISTORY_LIMIT, DecisionRecord, MetricRecord, RolloutState
from controller.ops.report.model import (
    Marker,
    MarkerKind,
    MetricPanel,
    MetricSeries,
    PhaseSpan,
    Point,
    ReportSeries,
    TableRow,
    Timeline,
    config_threshold,
    parse_threshold,
)

_KIND_BY_DECISION: dict[str, MarkerKind] = {
    "started": MarkerKind.START,
    "preflight-passed": MarkerKind.START,
    "preflight-failed": MarkerKind.FAILED,
    "step-reached": MarkerKind.STEP,
    "advance": MarkerKind.STEP,
    "hold": MarkerKind.HOLD,
    "hold-released": MarkerKind.HOLD,
    "paused": MarkerKind.PAUSE,
    "manual-gate": MarkerKind.PAUSE,
    "resumed": MarkerKind.COMMAND,
    "promoted": MarkerKind.COMMAND,
    "flip": MarkerKind.FLIP,
    "flipped": MarkerKind.FLIP,
    "bake-started": MarkerKind.BAKE,
    "bake-passed": MarkerKind.BAKE,
    "retention-started": MarkerKind.BAKE,
    "delete-stable": MarkerKind.BAKE,
    "rollback": MarkerKind.ROLLBACK,
    "rolled-back": MarkerKind.ROLLBACK,
    "completed": MarkerKind.COMPLETED,
    "failed": MarkerKind.FAILED,
}
# Mechanics, not decisions a reader of the chart looks for: listed in the table only.
TABLE_ONLY = frozenset({"scale-canary", "scale-stable", "select-shared", "select-stable"})

_WEIGHT_IN_REASON = re.compile(r"\((\d+(?:\.\d+)?)%\)")


def time_span(state: RolloutState, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The period a report covers: first record (or start) to finish (or `now` while running)."""
    times = [r.at for r in state.history]
    finished = state.end.finished_at if state.end is not None else None
    for t in (state.progress.started_at, finished):
        if t is not None:
            times.append(t)
    if not state.phase.terminal and now is not None:
        times.append(now)
    if not times:
        reference = now or state.progress.phase_since
        if reference is None:
            raise ValueError("the state has no history and no timestamps to place it in time")
        times.append(reference)
    start, end = min(times), max(times)
    if end - start < timedelta(minutes=1):
        end = start + timedelta(minutes=1)
    return start, end


def step_weights(rollout: Rollout, replicas: int | None) -> list[float | None]:
    """Each step's canary weight as the controller places it (the split's, not the asked)."""
    total = replicas or rollout.replicas
    if total is None:
        return [step.weight for step in rollout.steps]
    limits = Limits.for_rollout(rollout, total)
    out: list[float | None] = []
    for step in rollout.steps:
        split = place_step(rollout, step.weight, limits).split
        out.append(round(split.weight, 2) if split is not None else None)
    return out


def weight_in_reason(reason: str) -> float | None:
    """The split's weight a step-reached reason carries: ``... (25.0%), holding 2m``."""
    found = _WEIGHT_IN_REASON.search(reason)
    return float(found.group(1)) if found else None


def marker_kind(record: DecisionRecord) -> MarkerKind:
    """The kind a record is drawn as: rollbacks first, then any command someone gave."""
    kind = _KIND_BY_DECISION.get(record.decision)
    if kind is None and record.decision.endswith("-refused"):
        kind = MarkerKind.COMMAND
    kind = kind or MarkerKind.OTHER
    if kind is not MarkerKind.ROLLBACK and record.by != "ptc":
        return MarkerKind.COMMAND
    return kind


def _failing(record: DecisionRecord) -> list[str]:
    return [m.name for m in record.metrics if m.verdict == "fail"]


def marker_label(record: DecisionRecord, weight: float | None = None) -> str:
    """A short label for the chart; the reason in full is in the table."""
    d, step = record.decision, record.step + 1
    by = f" by {record.by}" if record.by != "ptc" else ""
    if d == "step-reached":
        return f"step {step} reached" + (f" {weight:g}%" if weight is not None else "")
    if d == "advance":
        return f"step {step} done"
    if d == "hold":
        what = "capacity" if "capacity gate" in record.reason else "analysis"
        return f"hold ({what})"
    if d == "rollback":
        failing = _failing(record)
        if by:
            return f"rollback{by}"
        return "ROLLBACK" + (f": {', '.join(failing)}" if failing else "")
    if d.endswith("-refused"):
        return f"{d.removesuffix('-refused')} refused{by}"
    names = {
        "started": "started",
        "preflight-passed": "preflight ok",
        "preflight-failed": "preflight failed",
        "hold-released": "hold released",
        "manual-gate": "manual gate",
        "flip": "flip",
        "flipped": "selector flipped",
        "bake-started": "bake",
        "bake-passed": "bake passed",
        "retention-started": "retention",
        "delete-stable": "stable deleted",
        "rolled-back": "rolled back",
    }
    return names.get(d, d) + by


def _desired_weights(
    history: Sequence[DecisionRecord], weights: Sequence[float | None] | None, truncated: bool
) -> tuple[list[Point], dict[int, float]]:
    """The weight of the split in place after each record, as a step line (and per record)."""
    current: float | None = None if truncated else 0.0
    points: list[Point] = []
    at_record: dict[int, float] = {}
    for i, r in enumerate(history):
        new: float | None = current
        if r.decision in ("started", "rollback", "rolled-back"):
            new = 0.0
        elif r.decision == "step-reached":
            configured = weights[r.step] if weights and 0 <= r.step < len(weights) else None
            new = configured if configured is not None else weight_in_reason(r.reason)
            at_record[i] = new if new is not None else math.nan
        elif r.decision in ("flipped", "bake-started", "bake-passed", "completed"):
            new = 100.0
        if i == 0 and current is not None:
            points.append(Point(r.at, current))
        if new is not None and new != current:
            points.append(Point(r.at, new))
            current = new
    return points, at_record


def _phase_spans(state: RolloutState, end: datetime) -> list[PhaseSpan]:
    h = state.history
    spans = [PhaseSpan(a.at, b.at, b.phase) for a, b in itertools.pairwise(h)]
    if h:
        spans.append(PhaseSpan(h[-1].at, end, state.phase.value))
    merged: list[PhaseSpan] = []
    for s in spans:
        if merged and merged[-1].phase == s.phase and merged[-1].end == s.start:
            merged[-1] = PhaseSpan(merged[-1].start, s.end, s.phase)
        elif s.end > s.start:
            merged.append(s)
    return merged


def _dedupe(points: list[Point]) -> tuple[Point, ...]:
    """One point per time (records taken at the same instant carry the same verdicts)."""
    out: dict[datetime, Point] = {}
    for p in points:
        out[p.at] = p
    return tuple(sorted(out.values(), key=lambda p: p.at))


def _metric_panel(
    name: str,
    readings: Sequence[tuple[datetime, MetricRecord]],
    configured: Metric | None,
    series: MetricSeries | None,
) -> MetricPanel:
    canary: list[Point] = []
    stable: list[Point] = []
    max_limit: list[Point] = []
    min_limit: list[Point] = []
    relative: list[Point] = []
    failing: list[Point] = []
    text = ""
    for at, m in readings:
        # A record's own threshold text is what was in force then (configs reload live).
        limits = parse_threshold(m.threshold) if m.threshold else None
        if limits is None and configured is not None:
            limits = config_threshold(configured)
        text = m.threshold or text
        if m.value is not None:
            canary.append(Point(at, m.value))
            if m.verdict == "fail":
                failing.append(Point(at, m.value))
        if m.stable is not None:
            stable.append(Point(at, m.stable))
        if limits is not None:
            if limits.max is not None:
                max_limit.append(Point(at, limits.max))
            if limits.min is not None:
                min_limit.append(Point(at, limits.min))
            rel = limits.relative_limit(m.stable)
            if rel is not None:
                relative.append(Point(at, rel))
    if not text and configured is not None:
        text = threshold_text(configured)
    queries = tuple(q for q in (series.canary_query, series.stable_query) if q) if series else ()
    return MetricPanel(
        name=name,
        threshold_text=text,
        canary=_dedupe(canary),
        stable=_dedupe(stable),
        max_limit=_dedupe(max_limit),
        min_limit=_dedupe(min_limit),
        relative_limit=_dedupe(relative),
        failing=_dedupe(failing),
        range_canary=series.canary if series else (),
        range_stable=series.stable if series else (),
        queries=queries,
    )


def configured_metrics(rollout: Rollout) -> list[Metric]:
    """Every metric the rollout analyses at some step, the rollout's own first, once by name."""
    seen: dict[str, Metric] = {}
    for index in range(-1, len(rollout.steps)):
        analysis = rollout.analysis if index < 0 else rollout.step_analysis(index)
        for metric in analysis.metrics:
            seen.setdefault(metric.name, metric)
    return list(seen.values())


def _with_end(points: list[Point], end: datetime) -> tuple[Point, ...]:
    """A step line drawn to the end of the timeline."""
    if points and points[-1].at < end:
        points.append(Point(end, points[-1].value))
    return tuple(points)


def config_note(state: RolloutState, rollout: Rollout) -> str | None:
    """What the report says of the config given against the one the rollout started under.

    A hash from a state v1 may be of an older canonical form of the config (ptc before
    state v2 hashed compact JSON, and a config model with fewer fields): a mismatch there is
    "unknown", not "differs". A match in either form is a match.
    """
    recorded = state.identity.spec_hash
    if not recorded:
        return None  # from before the hash was recorded: nothing either way
    dump = rollout.model_dump(mode="json", by_alias=True)
    compact = json.dumps(dump, sort_keys=True, separators=(",", ":"))
    if recorded in (rollout.spec_hash(), hashlib.sha256(compact.encode()).hexdigest()[:16]):
        return None
    if state.identity.legacy_spec_hash:
        return (
            "whether the config given is the one this rollout started under is unknown "
            "(written by an older ptc, which hashed the config differently)"
        )
    return (
        "the config given differs from the one this rollout started under: its steps and "
        "thresholds may not be those the rollout was judged by"
    )


def build_timeline(
    state: RolloutState,
    series: ReportSeries | None = None,
    *,
    rollout: Rollout | None = None,
    namespace: str = "",
    now: datetime | None = None,
) -> Timeline:
    """Turn the persisted state (and what Prometheus had) into the report's model.

    `rollout` (the config) gives each step's weight and the metrics' definitions; without it
    the weights come from the step-reached reasons. `now` ends the timeline of a rollout that
    is still running (default: its last record).
    """
    series = series or ReportSeries()
    history = state.history
    start, end = time_span(state, now)
    notes = list(series.notes)
    truncated = len(history) >= HISTORY_LIMIT and (not history or history[0].decision != "started")
    if truncated:
        notes.append(
            f"the state keeps the last {HISTORY_LIMIT} decisions: earlier ones are not shown"
        )
    if not history:
        notes.append("no decisions recorded yet")
    note = config_note(state, rollout) if rollout is not None else None
    if note is not None:
        notes.append(note)
    weights = step_weights(rollout, state.progress.replicas) if rollout is not None else None
    desired, at_record = _desired_weights(history, weights, truncated)

    markers: list[Marker] = []
    rows: list[TableRow] = []
    for i, r in enumerate(history):
        kind = marker_kind(r)
        rows.append(TableRow(i + 1, r, kind, r.at - start))
        if r.decision in TABLE_ONLY and r.by == "ptc":
            continue
        w = at_record.get(i)
        label = marker_label(r, None if w is None or math.isnan(w) else w)
        markers.append(Marker(i + 1, r.at, r.decision, kind, label, r.reason, r.by, r.step))

    readings: dict[str, list[tuple[datetime, MetricRecord]]] = {}
    for r in history:
        for m in r.metrics:
            readings.setdefault(m.name, []).append((r.at, m))
    defined = {m.name: m for m in configured_metrics(rollout)} if rollout is not None else {}
    names = list(dict.fromkeys([*defined, *readings, *series.metrics]))
    panels = tuple(
        _metric_panel(n, readings.get(n, []), defined.get(n), series.metrics.get(n)) for n in names
    )

    return Timeline(
        rollout=state.identity.rollout or (rollout.name if rollout else ""),
        namespace=namespace or (rollout.namespace if rollout else ""),
        phase=state.phase.value,
        attempt=state.attempt,
        message=state.message,
        start=start,
        end=end,
        desired_weight=_with_end(desired, end),
        weight_source="config" if weights is not None else "records",
        actual_weight=series.weight_actual,
        metrics=panels,
        markers=tuple(markers),
        spans=tuple(_phase_spans(state, end)),
        rows=tuple(rows),
        notes=tuple(notes),
        series_source=series.source,
    )
