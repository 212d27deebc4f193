"""Reconcile and evaluation lag: measured from when work became due, exported, summarised.

Time is a counter the tests move by hand (the Wake's clock, the reconciler's SteppedClock):
nothing sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from controller.core.analysis.evaluate import AnalysisSummary, Verdict
from controller.shell.analysis_runner import AnalysisReport
from controller.shell.lag import RECONCILE_BEHIND_S, RolloutLag, Wake, fleet_lag
from controller.shell.metrics import Metrics
from tests.unit.fake_cluster import until
from tests.unit.test_reconciler_echo import SPEC, state, world


class Ticks:
    """A monotonic clock the test sets."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def histogram(metrics: Metrics, name: str) -> tuple[float | None, float | None]:
    registry = metrics.registry
    return registry.get_sample_value(f"{name}_count"), registry.get_sample_value(f"{name}_sum")


async def test_a_reconcile_is_late_from_the_first_wake_up_since_the_last_one() -> None:
    ticks, lags = Ticks(), list[float]()
    wake = Wake(on_lag=lags.append, clock=ticks)
    wake.set()
    ticks.now = 101.0
    wake.set()  # a second event does not make the first one younger
    ticks.now = 104.5
    wake.clear()
    assert lags == [4.5]
    wake.clear()  # nothing was due: nothing to report
    assert lags == [4.5]


async def test_a_wait_that_runs_out_is_due_at_its_end() -> None:
    ticks, lags = Ticks(), list[float]()
    wake = Wake(on_lag=lags.append, clock=ticks)
    await wake.sleep(0)  # runs out at once: due at 100
    ticks.now = 102.0  # the loop came back to this task 2 s later
    wake.clear()
    assert lags == [2.0]
    wake.set()  # an event during the wait: due when it came, not when the wait would end
    await wake.sleep(30)
    ticks.now = 102.25
    wake.clear()
    assert lags == [2.0, 0.25]


async def test_the_reconcile_loop_reports_its_lag_to_metrics_and_status() -> None:
    async with world(state(), stable=3, canary=1) as w:
        r = w.reconciler
        ticks, seen = Ticks(), list[float]()

        def on_lag(seconds: float) -> None:
            seen.append(seconds)
            r.lag.reconcile(seconds)

        r.wake = Wake(on_lag=on_lag, clock=ticks)
        r.wake.set()
        ticks.now = 103.0  # a saturated loop: the reconcile starts 3 s after its wake-up
        task = asyncio.create_task(r.run())
        try:
            await until(lambda: bool(seen))
        finally:
            r.stop()
            await task
        assert seen[0] == 3.0  # later reconciles (echoes of its writes) came at once
        assert r.lag.latest.reconcile_s == seen[-1]
        count, total = histogram(r.metrics, "ptc_reconcile_lag_seconds")
        assert count is not None and count >= 1
        assert total is not None and total >= 3.0


async def test_a_verdict_older_than_its_interval_is_measured_as_late() -> None:
    async with world(state(), stable=3, canary=1) as w:
        r = w.reconciler
        interval = SPEC.step_analysis(0).interval
        at = w.clock() - interval - timedelta(seconds=5)
        report = AnalysisReport(SPEC.name, SPEC.spec_hash(), 0, AnalysisSummary(at, Verdict.PASS))
        await r._on_report(report)
    assert r.lag.latest.evaluation_s == interval.total_seconds() + 5
    assert r.lag.latest.verdict_late
    assert histogram(r.metrics, "ptc_evaluation_lag_seconds") == (1.0, 15.0)


def test_readyz_names_the_worst_rollout_and_says_why_it_is_behind() -> None:
    calm = RolloutLag(reconcile_s=0.002, evaluation_s=0.3, interval_s=10.0)
    late = RolloutLag(reconcile_s=RECONCILE_BEHIND_S + 2, evaluation_s=12.0, interval_s=10.0)
    summary = fleet_lag([("ns/calm", calm), ("ns/late", late), ("ns/new", RolloutLag())])
    assert summary["maxReconcileSeconds"] == RECONCILE_BEHIND_S + 2
    assert summary["maxReconcileRollout"] == "ns/late"
    assert summary["maxEvaluationSeconds"] == 12.0
    assert len(summary["behind"]) == 2
    assert "shard" in summary["behind"][0]
    assert "1 rollout(s)" in summary["behind"][1]
    assert fleet_lag([("ns/calm", calm)])["behind"] == []
    assert fleet_lag([])["maxReconcileSeconds"] is None
