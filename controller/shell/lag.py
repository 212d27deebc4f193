"""How far behind the controller runs: reconcile lag and evaluation lag, per rollout and fleet-wide.

*Reconcile lag* is the time from the moment a reconcile became due (the first event or report
that woke the rollout since its last reconcile, or the end of the wait it slept) to the moment
that reconcile began. On an idle event loop it is a few milliseconds. It grows when one process
runs more rollouts than its core can keep up with, and when an event arrives while the rollout's
previous reconcile still waits on a slow API server: either way it is how long a command or a
breach's verdict waited before it was acted on.

*Evaluation lag* is the age of a verdict when it reaches the reconciler: from the evaluation's
scheduled time to its delivery (queries included). A verdict older than its analysis interval
means evaluations cannot keep their schedule.

Both are exported as histograms (``ptc_reconcile_lag_seconds``, ``ptc_evaluation_lag_seconds``,
no per-rollout label: hundreds of rollouts times a dozen buckets would swamp Prometheus), kept
per rollout for ``ptc status``, and summarised on ``/readyz`` so an operator knows to shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from controller.shell.metrics import Metrics

# A reconcile that starts this late is reported as "behind" on /readyz: every event (a command,
# a breach's verdict) waits that long before it is acted on.
RECONCILE_BEHIND_S = 5.0


class Wake(asyncio.Event):
    """A reconciler's wake-up event that remembers since when a reconcile has been due.

    ``set()`` marks "due now" (the earliest mark since the last ``clear()`` counts);
    :meth:`sleep` marks the end of a wait that ran out. ``clear()`` — called as a reconcile
    begins — reports the lag since the mark to ``on_lag``.
    """

    def __init__(
        self,
        on_lag: Callable[[float], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._on_lag = on_lag
        self._time = clock
        self._due: float | None = None

    def set(self) -> None:
        """Wake the reconciler; a reconcile is due from now (unless it already was)."""
        if self._due is None:
            self._due = self._time()
        super().set()

    def clear(self) -> None:
        """A reconcile begins: report how long it has been due, and forget the mark."""
        due, self._due = self._due, None
        if due is not None:
            self._on_lag(max(self._time() - due, 0.0))
        super().clear()

    async def sleep(self, seconds: float) -> None:
        """Wait until set, or ``seconds`` at most; a wait that runs out is due at its end."""
        started = self._time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(), timeout=seconds)
            return
        end = started + seconds
        if self._due is None or end < self._due:
            self._due = end


@dataclass
class RolloutLag:
    """The latest lags of one rollout (None until measured)."""

    reconcile_s: float | None = None
    evaluation_s: float | None = None
    interval_s: float | None = None  # of the latest verdict's analysis

    @property
    def verdict_late(self) -> bool:
        """Whether the latest verdict was older than its analysis interval when delivered."""
        return (
            self.evaluation_s is not None
            and self.interval_s is not None
            and self.evaluation_s > self.interval_s
        )

    def document(self) -> dict[str, float | None]:
        """For the status document: seconds, rounded to milliseconds."""
        return {
            "reconcileSeconds": _ms(self.reconcile_s),
            "evaluationSeconds": _ms(self.evaluation_s),
            "intervalSeconds": self.interval_s,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> RolloutLag:
        """The inverse of :meth:`document` (absent or malformed values read as unmeasured)."""

        def number(key: str) -> float | None:
            value = doc.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return float(value)

        return cls(
            number("reconcileSeconds"), number("evaluationSeconds"), number("intervalSeconds")
        )


class LagMeter:
    """One rollout's lag measurements: into the fleet-wide histograms and its latest values."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.latest = RolloutLag()

    def reconcile(self, seconds: float) -> None:
        """A reconcile began ``seconds`` after it became due."""
        self.latest.reconcile_s = seconds
        self._metrics.reconcile_lag.observe(seconds)

    def evaluation(self, age: timedelta, interval: timedelta) -> None:
        """A verdict of an ``interval`` analysis reached the reconciler at this ``age``."""
        seconds = max(age.total_seconds(), 0.0)
        self.latest.evaluation_s = seconds
        self.latest.interval_s = interval.total_seconds()
        self._metrics.evaluation_lag.observe(seconds)


def fleet_lag(rollouts: Iterable[tuple[str, RolloutLag]]) -> dict[str, Any]:
    """The worst latest lags over (rollout name, its lags), for /readyz.

    ``behind`` lists why the controller cannot keep up: a reconcile started more than
    :data:`RECONCILE_BEHIND_S` late, or a verdict was older than its interval when delivered.
    """
    worst: dict[str, tuple[float, str] | None] = {"reconcile": None, "evaluation": None}
    behind: list[str] = []
    late_verdicts = 0
    for name, lag in rollouts:
        for kind, value in (("reconcile", lag.reconcile_s), ("evaluation", lag.evaluation_s)):
            current = worst[kind]
            if value is not None and (current is None or value > current[0]):
                worst[kind] = (value, name)
        late_verdicts += lag.verdict_late
    reconcile = worst["reconcile"]
    if reconcile is not None and reconcile[0] > RECONCILE_BEHIND_S:
        behind.append(
            f"a reconcile started {reconcile[0]:.1f}s after it was due ({reconcile[1]}): this "
            "controller cannot keep up (CPU, or a slow API server: see "
            "ptc_action_duration_seconds); shard the rollouts over more replicas (ptc run --shards)"
        )
    if late_verdicts:
        behind.append(
            f"{late_verdicts} rollout(s) received verdicts older than their analysis interval"
        )
    return {
        "maxReconcileSeconds": _ms(reconcile[0]) if reconcile else None,
        "maxReconcileRollout": reconcile[1] if reconcile else None,
        "maxEvaluationSeconds": _ms(worst["evaluation"][0]) if worst["evaluation"] else None,
        "maxEvaluationRollout": worst["evaluation"][1] if worst["evaluation"] else None,
        "behind": behind,
    }


def lag_caption(docs: Iterable[Mapping[str, Any]]) -> str | None:
    """One line for ``ptc status`` from the documents' lags (None when none carries any)."""
    lags = [
        (f"{d.get('namespace')}/{d.get('name')}", RolloutLag.from_document(d["lag"]))
        for d in docs
        if isinstance(d.get("lag"), Mapping)
    ]
    if not lags:
        return None
    fleet = fleet_lag(lags)
    line = (
        f"controller lag: reconcile {_seconds(fleet['maxReconcileSeconds'])} "
        f"({fleet['maxReconcileRollout'] or '-'}), verdict age "
        f"{_seconds(fleet['maxEvaluationSeconds'])} ({fleet['maxEvaluationRollout'] or '-'})"
    )
    return "; ".join([line, *fleet["behind"]])


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}s"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
