"""One evaluation's report: what the reconciler acts on, and the one log line that explains it.

Also how a new runner resumes ``for:`` clocks persisted in the rollout's state (`restored`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from controller.core.analysis.evaluate import AnalysisSummary, MetricResult, Sample, Verdict
from controller.core.analysis.share import ShareReading

# The runner's logger: the evaluation line keeps the name it has always been logged under.
log = structlog.get_logger("controller.shell.analysis_runner")


@dataclass(frozen=True)
class AnalysisReport:
    """One evaluation: the verdicts plus what the reconciler needs to act on them.

    `step` says what was judged: the reconciler ignores a report for another step than the
    state's. `spec_hash` names the config it was judged under: the reconciler ignores a report
    judged under another spec than the one in force (a reload's thresholds apply from the next
    evaluation on, which the reconciler asks for at once). `capacity` and `demand` are None
    when the step's analysis has no capacity gate.
    """

    rollout: str
    spec_hash: str
    step: int
    summary: AnalysisSummary
    capacity: Sample | None = None
    demand: Sample | None = None
    share: ShareReading | None = None  # None when the step's analysis has no trafficShare

    @property
    def verdict(self) -> Verdict:
        """The overall verdict of the metrics (the capacity gate is judged by the caller)."""
        return self.summary.verdict


def restored(since: Mapping[str, datetime], at: datetime) -> AnalysisSummary | None:
    """A `previous` for a new runner from persisted breach clocks (None when there are none).

    Only the clocks matter to the next evaluation; the verdicts are placeholders that nothing
    reads (`evaluate` looks at `breach_since` alone).
    """
    if not since:
        return None
    metrics = tuple(
        MetricResult(name, Verdict.INCONCLUSIVE, None, None, "", "restored breach clock", t)
        for name, t in sorted(since.items())
    )
    return AnalysisSummary(at, Verdict.INCONCLUSIVE, metrics)


def _sample_fields(sample: Sample | None) -> dict[str, Any] | None:
    if sample is None:
        return None
    return {"value": sample.value, "requests": sample.requests, "error": sample.error}


def log_report(report: AnalysisReport, elapsed: timedelta) -> None:
    """The one canonical line per evaluation: enough to reconstruct the decision."""
    summary = report.summary
    level = log.warning if summary.verdict in (Verdict.FAIL, Verdict.ERROR) else log.info
    fields: dict[str, Any] = {
        "rollout": report.rollout,
        "step": report.step,
        "verdict": str(summary.verdict),
        "at": summary.at.isoformat(),
        "duration_s": round(elapsed.total_seconds(), 3),
        "metrics": [m.to_json() for m in summary.metrics],
    }
    if report.capacity is not None:
        fields["capacity"] = _sample_fields(report.capacity)
        fields["demand"] = _sample_fields(report.demand)
    if report.share is not None:
        fields["share"] = {
            "observed": report.share.percent(),
            "canary": _sample_fields(report.share.canary),
            "service": _sample_fields(report.share.service),
        }
    level("analysis evaluated", **fields)
