"""The report's model: what a timeline is made of (series, markers, spans, panels, rows) and
how a threshold's text reads back into limits. Pure data; `timeline` builds it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from controller.core.config.model import Metric
from controller.core.state import DecisionRecord

_STABLE_LIMIT = re.compile(r"^stable\*(?P<factor>[0-9.eE+-]+?)\+(?P<slack>[0-9.eE+-]+)$")


@dataclass(frozen=True)
class Point:
    """One value at one time (NaN marks a gap in a line)."""

    at: datetime
    value: float


@dataclass(frozen=True)
class MetricSeries:
    """A metric's range-query results per side, and the PromQL that produced them."""

    canary: tuple[Point, ...] = ()
    stable: tuple[Point, ...] = ()
    canary_query: str = ""
    stable_query: str = ""


@dataclass(frozen=True)
class ReportSeries:
    """What Prometheus added to the records (all optional); `notes` say what it could not."""

    weight_actual: tuple[Point, ...] = ()
    metrics: Mapping[str, MetricSeries] = field(default_factory=dict)
    source: str = ""  # where the series came from, for people (a Prometheus URL)
    notes: tuple[str, ...] = ()


class MarkerKind(StrEnum):
    """What a decision marker stands for; each kind has one colour and one legend entry."""

    START = "start"
    STEP = "step"
    HOLD = "hold"
    PAUSE = "pause"
    COMMAND = "command"
    FLIP = "flip"
    BAKE = "bake"
    ROLLBACK = "rollback"
    COMPLETED = "completed"
    FAILED = "failed"
    OTHER = "other"


@dataclass(frozen=True)
class Marker:
    """One decision drawn on the chart; `index` is its row number in the decision table."""

    index: int
    at: datetime
    decision: str
    kind: MarkerKind
    label: str
    reason: str
    by: str
    step: int


@dataclass(frozen=True)
class PhaseSpan:
    """The rollout was in `phase` from `start` to `end`."""

    start: datetime
    end: datetime
    phase: str


@dataclass(frozen=True)
class Threshold:
    """A metric's limits as parsed from its threshold text (``<= 0.05, <= stable*1.5+0.01``)."""

    max: float | None = None
    min: float | None = None
    factor: float | None = None  # compare: canary vs stable * factor + slack
    slack: float = 0.0
    higher_is_better: bool = False

    def relative_limit(self, stable: float | None) -> float | None:
        """The limit the compare rule sets for a stable value (None without compare or stable)."""
        if self.factor is None or stable is None:
            return None
        if self.higher_is_better:
            return stable / self.factor - self.slack
        return stable * self.factor + self.slack


@dataclass(frozen=True)
class MetricPanel:
    """One analysis metric over time: recorded values, limits, failures, range series."""

    name: str
    threshold_text: str  # the latest one recorded (or configured)
    canary: tuple[Point, ...]  # values recorded with decisions
    stable: tuple[Point, ...]
    max_limit: tuple[Point, ...]  # absolute limits as recorded, a step line
    min_limit: tuple[Point, ...]
    relative_limit: tuple[Point, ...]  # stable * factor + slack at each recorded stable value
    failing: tuple[Point, ...]  # canary values recorded with verdict fail
    range_canary: tuple[Point, ...] = ()
    range_stable: tuple[Point, ...] = ()
    queries: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableRow:
    """One decision as the table lists it."""

    index: int
    record: DecisionRecord
    kind: MarkerKind
    elapsed: timedelta  # since the timeline's start


@dataclass(frozen=True)
class Timeline:
    """Everything a report shows about one rollout."""

    rollout: str
    namespace: str
    phase: str
    attempt: int
    message: str
    start: datetime
    end: datetime
    desired_weight: tuple[Point, ...]
    weight_source: str  # "config" or "records"
    actual_weight: tuple[Point, ...]
    metrics: tuple[MetricPanel, ...]
    markers: tuple[Marker, ...]
    spans: tuple[PhaseSpan, ...]
    rows: tuple[TableRow, ...]
    notes: tuple[str, ...]
    series_source: str = ""


def parse_threshold(text: str) -> Threshold:
    """Read the evaluator's threshold text; parts it does not understand are ignored."""
    max_, min_, factor, slack, higher = None, None, None, 0.0, False
    for part in (p.strip() for p in text.split(",")):
        op, _, operand = part.partition(" ")
        if op not in ("<=", ">="):
            continue
        operand = operand.strip()
        relative = _STABLE_LIMIT.match(operand)
        try:
            if relative is not None:
                factor = float(relative.group("factor"))
                slack = float(relative.group("slack"))
                higher = op == ">="
            elif op == "<=":
                max_ = float(operand)
            else:
                min_ = float(operand)
        except ValueError:
            continue
    return Threshold(max_, min_, factor, slack, higher)


def config_threshold(metric: Metric) -> Threshold:
    """A configured metric's limits, as `parse_threshold` would read its threshold text."""
    compare = metric.compare
    return Threshold(
        metric.max,
        metric.min,
        compare.factor if compare else None,
        compare.slack if compare else 0.0,
        metric.min is not None and metric.max is None,
    )
