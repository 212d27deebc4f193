"""A backtest as the report's `Timeline`, so `ptc report`'s chart draws it (pure).

Each metric panel shows canary's and stable's value at every tick, the thresholds, the limit
the comparison against stable sets, and an X at each failing tick. Backgrounds shade the
ticks that held (inconclusive or error) and failed; markers show where each metric first held
and failed, where ptc would have rolled back and where maxHold would have run out. The weight
panel shows the step's weight: a backtest judges one step as if the rollout stood there.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from controller.core.analysis.evaluate import Verdict
from controller.core.config.model import Metric
from controller.ops.backtest.model import BacktestResult, TickResult
from controller.ops.report.model import (
    Marker,
    MarkerKind,
    MetricPanel,
    PhaseSpan,
    Point,
    Timeline,
    config_threshold,
)

_SHADE = {Verdict.INCONCLUSIVE: "holding", Verdict.ERROR: "holding", Verdict.FAIL: "failed"}


def _line(points: list[tuple[datetime, float | None]]) -> tuple[Point, ...]:
    """Points with NaN where a tick had no value, so the line breaks there."""
    return tuple(Point(at, math.nan if v is None else v) for at, v in points)


def _panel(metric: Metric, ticks: Sequence[TickResult]) -> MetricPanel:
    limits = config_threshold(metric)
    canary: list[tuple[datetime, float | None]] = []
    stable: list[tuple[datetime, float | None]] = []
    relative: list[Point] = []
    failing: list[Point] = []
    threshold = ""
    for tick in ticks:
        result = next((m for m in tick.summary.metrics if m.name == metric.name), None)
        if result is None:
            continue
        threshold = threshold or result.threshold
        canary.append((tick.at, result.value))
        stable.append((tick.at, result.stable))
        limit = limits.relative_limit(result.stable)
        if limit is not None:
            relative.append(Point(tick.at, limit))
        if result.verdict is Verdict.FAIL and result.value is not None:
            failing.append(Point(tick.at, result.value))
    ends = [ticks[0].at, ticks[-1].at] if ticks else []
    return MetricPanel(
        name=metric.name,
        threshold_text=threshold,
        canary=(),
        stable=(),
        max_limit=tuple(Point(at, limits.max) for at in ends) if limits.max is not None else (),
        min_limit=tuple(Point(at, limits.min) for at in ends) if limits.min is not None else (),
        relative_limit=tuple(relative),
        failing=tuple(failing),
        range_canary=_line(canary),
        range_stable=_line(stable) if any(v is not None for _, v in stable) else (),
    )


def _spans(ticks: Sequence[TickResult], every: timedelta) -> tuple[PhaseSpan, ...]:
    """Runs of held or failed ticks; each tick's verdict stands until the next tick."""
    spans = []
    for shade, run in itertools.groupby(ticks, key=lambda t: _SHADE.get(t.summary.verdict)):
        held = list(run)
        if shade is not None:
            spans.append(PhaseSpan(held[0].at, held[-1].at + every, shade))
    return tuple(spans)


def moments(result: BacktestResult) -> list[Marker]:
    """The markers: first hold and first fail of each metric, the rollback, maxHold."""
    summary = result.summary
    step = result.spec.step
    found: list[tuple[datetime, int, str, MarkerKind, str, str]] = []
    rollback_at = summary.rollback.at if summary.rollback else None
    for order, m in enumerate(summary.metrics):
        if m.first_hold is not None:
            found.append(
                (m.first_hold, order, "hold", MarkerKind.HOLD, f"hold: {m.name}", m.hold_reason)
            )
        if m.first_fail is not None and m.first_fail != rollback_at:
            found.append(
                (m.first_fail, order, "fail", MarkerKind.FAILED, f"fail: {m.name}", m.fail_reason)
            )
    if summary.rollback is not None:
        failing = [m.name for m in summary.metrics if m.first_fail == rollback_at]
        found.append(
            (
                summary.rollback.at,
                -1,
                "rollback",
                MarkerKind.ROLLBACK,
                "ROLLBACK: " + ", ".join(failing),
                summary.rollback.reason,
            )
        )
    if summary.max_hold is not None:
        o = summary.max_hold
        found.append((o.at, -1, "max-hold", MarkerKind.PAUSE, f"maxHold: {o.action}", o.reason))
    found.sort(key=lambda f: (f[0], f[1]))
    return [
        Marker(i + 1, at, decision, kind, label, reason, "ptc", step)
        for i, (at, _, decision, kind, label, reason) in enumerate(found)
    ]


def build_backtest_timeline(result: BacktestResult) -> Timeline:
    """The chart's model of a backtest."""
    spec = result.spec
    weight = spec.rollout.steps[spec.step].weight
    first = result.summary.first_action
    return Timeline(
        rollout=spec.rollout.name,
        namespace=spec.rollout.namespace,
        phase="backtest",
        attempt=1,
        message=f"{first.action} at {first.at:%Y-%m-%d %H:%M:%S} UTC" if first else "no action",
        start=spec.start,
        end=spec.end,
        desired_weight=(Point(spec.start, weight), Point(spec.end, weight)),
        weight_source="config",
        actual_weight=(),
        metrics=tuple(_panel(m, result.ticks) for m in spec.analysis.metrics),
        markers=tuple(moments(result)),
        spans=_spans(result.ticks, spec.every),
        rows=(),
        notes=(),
        series_source=f"Prometheus {result.prometheus}",
    )


__all__ = ["build_backtest_timeline", "moments"]
