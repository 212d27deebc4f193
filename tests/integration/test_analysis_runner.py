"""AnalysisRunner with a fake provider and a fake clock: schedule, `for:`, reloads, shutdown.

Time is a `FakeTime`: the runner's `sleep` parks until the test calls `tick()`, which moves the
clock by exactly the requested duration. Tests therefore step the loop one evaluation at a time
and assert exact times, without sleeping for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from controller.core.analysis.evaluate import Measurement, Sample, Verdict
from controller.core.analysis.grid import next_tick, template_offset
from controller.core.config.model import Analysis, CapacityGate, Rollout
from controller.shell.analysis_runner import AnalysisReport, AnalysisRunner, OnResult

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
# Bounds only the test's own waits for the runner to reach its next sleep (a few loop turns).
WAIT = 5.0


class FakeTime:
    """A clock plus a sleep that only returns when the test says so."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._pending: tuple[float, asyncio.Future[None]] | None = None
        self._sleeping = asyncio.Event()

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleeps.append(seconds)
        self._pending = (seconds, future)
        self._sleeping.set()
        await future

    async def until_sleeping(self) -> None:
        """Wait until the runner has finished an evaluation and parked in sleep()."""
        await asyncio.wait_for(self._sleeping.wait(), WAIT)

    def release(self) -> None:
        """End the pending sleep; the clock moves by exactly its length."""
        assert self._pending is not None, "runner is not sleeping"
        seconds, future = self._pending
        self._pending = None
        self._sleeping.clear()
        self.now += timedelta(seconds=seconds)
        future.set_result(None)

    async def tick(self) -> None:
        """End the pending sleep and wait until the runner sleeps again (one evaluation)."""
        self.release()
        await self.until_sleeping()


async def until(condition: Callable[[], bool], turns: int = 1000) -> None:
    """Let other tasks run until `condition` holds (bounded by loop turns, not by time)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


class FakeProvider:
    """Answers from `values` (metric name -> canary sample); records every call."""

    def __init__(self, values: dict[str, Sample] | None = None) -> None:
        self.values = values or {}
        self.stable = Sample(0.01, requests=1000)
        self.measured: list[tuple[Rollout, Analysis]] = []
        self.ticks: list[datetime | None] = []  # the `tick` of every measure() call
        self.capacity_calls: list[tuple[CapacityGate, timedelta]] = []
        self.before_measure: Callable[[], Awaitable[None]] | None = None
        self.closed = False

    async def measure(
        self, rollout: Rollout, analysis: Analysis, *, tick: datetime | None = None
    ) -> dict[str, Measurement]:
        self.measured.append((rollout, analysis))
        self.ticks.append(tick)
        if self.before_measure is not None:
            await self.before_measure()
        return {
            m.name: Measurement(
                m.name,
                self.values.get(m.name, Sample(0.0, requests=1000)),
                self.stable if m.compare is not None else None,
            )
            for m in analysis.metrics
        }

    async def capacity(
        self,
        rollout: Rollout,
        gate: CapacityGate,
        window: timedelta,
        *,
        tick: datetime | None = None,
    ) -> tuple[Sample, Sample]:
        self.capacity_calls.append((gate, window))
        return Sample(12.5), Sample(30.0, requests=3600)

    async def close(self) -> None:
        self.closed = True


def make_rollout(**changes: Any) -> Rollout:
    spec: dict[str, Any] = {
        "name": "zai-proxy",
        "namespace": "devpod",
        "service": "zai-proxy",
        "stable": {"deployment": "zai-proxy"},
        "canary": {"deployment": "zai-proxy-v2", "version": "v2"},
        "steps": [
            {"weight": 25},
            {
                "weight": 50,
                "analysis": {
                    "interval": "10s",
                    "metrics": [
                        {
                            "name": "p95-latency",
                            "histogramQuantile": {
                                "metric": "zai_proxy_request_duration_seconds",
                                "quantile": 0.95,
                            },
                            "max": 2.0,
                        }
                    ],
                },
            },
        ],
        "analysis": {
            "interval": "30s",
            "metrics": [
                {
                    "name": "bad-gateway-ratio",
                    "counterRatio": {
                        "metric": "zai_proxy_requests_total",
                        "numerator": {"status_code": "502"},
                    },
                    "max": 0.05,
                    "for": "1m",
                }
            ],
        },
    }
    spec.update(changes)
    return Rollout.model_validate(spec)


class Harness:
    """A runner wired to FakeTime, a FakeProvider and a list of delivered reports."""

    def __init__(
        self, rollout: Rollout | None = None, on_result: OnResult | None = None, **kwargs: Any
    ) -> None:
        self.time = FakeTime()
        self.provider = FakeProvider()
        self.reports: list[AnalysisReport] = []
        self.runner = AnalysisRunner(
            rollout or make_rollout(),
            self.provider,
            on_result or self.reports.append,
            clock=self.time.clock,
            sleep=self.time.sleep,
            **kwargs,
        )

    async def start(self) -> None:
        self.runner.start()
        await self.time.until_sleeping()

    def verdicts(self, metric: str) -> list[Verdict]:
        return [{m.name: m.verdict for m in r.summary.metrics}[metric] for r in self.reports]


def other_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current}


async def test_evaluates_at_start_and_then_every_interval() -> None:
    h = Harness()
    await h.start()
    await h.time.tick()
    await h.time.tick()
    await h.runner.stop()

    assert [r.summary.at for r in h.reports] == [T0 + timedelta(seconds=s) for s in (0, 30, 60)]
    assert h.time.sleeps == [30.0, 30.0, 30.0]
    assert all(r.verdict is Verdict.PASS for r in h.reports)
    assert all((r.rollout, r.step) == ("zai-proxy", 0) for r in h.reports)
    assert h.reports[0].spec_hash == make_rollout().spec_hash()
    assert h.runner.last is h.reports[-1]


async def test_for_is_carried_across_evaluations() -> None:
    h = Harness()
    h.provider.values["bad-gateway-ratio"] = Sample(0.2, requests=1000)
    await h.start()
    for _ in range(3):
        await h.time.tick()
    await h.runner.stop()

    assert h.verdicts("bad-gateway-ratio") == [
        Verdict.INCONCLUSIVE,  # 0s of 60s
        Verdict.INCONCLUSIVE,  # 30s of 60s
        Verdict.FAIL,  # 60s: for: has passed
        Verdict.FAIL,
    ]
    assert {r.summary.metrics[0].breach_since for r in h.reports} == {T0}
    assert "breaching for 30s of 60s" in h.reports[1].summary.metrics[0].reason


async def test_a_recovered_breach_restarts_the_for_clock() -> None:
    h = Harness()
    h.provider.values["bad-gateway-ratio"] = Sample(0.2, requests=1000)
    await h.start()
    h.provider.values["bad-gateway-ratio"] = Sample(0.01, requests=1000)
    await h.time.tick()
    h.provider.values["bad-gateway-ratio"] = Sample(0.2, requests=1000)
    await h.time.tick()
    await h.time.tick()
    await h.runner.stop()
    assert h.verdicts("bad-gateway-ratio") == [
        Verdict.INCONCLUSIVE,
        Verdict.PASS,
        Verdict.INCONCLUSIVE,
        Verdict.INCONCLUSIVE,
    ]
    assert h.reports[-1].summary.metrics[0].breach_since == T0 + timedelta(seconds=60)


async def test_previous_summary_can_be_restored() -> None:
    """`previous` (e.g. persisted before a restart) keeps the `for:` clock running."""
    first = Harness()
    first.provider.values["bad-gateway-ratio"] = Sample(0.2, requests=1000)
    await first.start()
    await first.runner.stop()

    h = Harness(previous=first.reports[0].summary)
    h.time.now = T0 + timedelta(minutes=1)
    h.provider.values["bad-gateway-ratio"] = Sample(0.2, requests=1000)
    await h.start()
    await h.runner.stop()
    assert h.verdicts("bad-gateway-ratio") == [Verdict.FAIL]


async def test_set_step_applies_at_the_next_evaluation() -> None:
    h = Harness()
    gate = asyncio.Event()
    await h.start()

    # Change the step while an evaluation is in progress: that one still judges step 0.
    async def blocked() -> None:
        await gate.wait()

    h.provider.before_measure = blocked
    h.time.release()
    await until(lambda: len(h.provider.measured) == 2)
    h.runner.set_step(1)
    h.provider.before_measure = None
    gate.set()
    await h.time.until_sleeping()
    assert [r.step for r in h.reports] == [0, 0]

    await h.time.tick()
    await h.time.tick()
    await h.runner.stop()

    assert [r.step for r in h.reports] == [0, 0, 1, 1]
    # Step 1's override: its own metric and a 10s interval, from the evaluation after the change.
    assert [m.name for m in h.reports[2].summary.metrics] == ["p95-latency"]
    assert h.provider.measured[2][1].interval == timedelta(seconds=10)
    assert h.time.sleeps == [30.0, 10.0, 10.0, 10.0]
    assert [r.summary.at for r in h.reports] == [T0 + timedelta(seconds=s) for s in (0, 30, 40, 50)]


async def test_set_step_rejects_a_step_that_does_not_exist() -> None:
    h = Harness()
    with pytest.raises(IndexError, match=r"steps 0\.\.1, not 2"):
        h.runner.set_step(2)


async def test_update_applies_at_the_next_evaluation() -> None:
    h = Harness()
    h.provider.values["bad-gateway-ratio"] = Sample(0.2, requests=1000)
    await h.start()
    await h.time.tick()
    # Reload with a relaxed threshold (same canary): the breach is over at the next evaluation.
    relaxed = make_rollout()
    analysis = relaxed.analysis.model_copy(
        update={"metrics": [relaxed.analysis.metrics[0].model_copy(update={"max": 0.5})]}
    )
    h.runner.update(relaxed.model_copy(update={"analysis": analysis}))
    assert h.reports[-1].spec_hash == make_rollout().spec_hash()
    await h.time.tick()
    await h.runner.stop()
    assert h.verdicts("bad-gateway-ratio") == [
        Verdict.INCONCLUSIVE,
        Verdict.INCONCLUSIVE,
        Verdict.PASS,
    ]
    assert h.reports[-1].spec_hash == h.runner.rollout.spec_hash() != make_rollout().spec_hash()
    assert h.reports[-1].summary.metrics[0].threshold == "<= 0.5"


async def test_update_keeps_for_state_unless_the_canary_changes() -> None:
    h = Harness()
    h.provider.values["bad-gateway-ratio"] = Sample(0.2, requests=1000)
    await h.start()
    await h.time.tick()
    h.runner.update(make_rollout(flip={"bake": "1m"}))  # unrelated change: clock keeps running
    await h.time.tick()
    assert h.verdicts("bad-gateway-ratio")[-1] is Verdict.FAIL
    # A new canary version is a new subject: its breach starts from scratch.
    h.runner.update(make_rollout(canary={"deployment": "zai-proxy-v3", "version": "v3"}))
    await h.time.tick()
    await h.runner.stop()
    assert h.verdicts("bad-gateway-ratio")[-1] is Verdict.INCONCLUSIVE
    assert h.reports[-1].summary.metrics[0].breach_since == T0 + timedelta(seconds=90)


async def test_update_of_another_rollout_is_refused() -> None:
    h = Harness()
    with pytest.raises(ValueError, match="runner for 'zai-proxy' got rollout 'other'"):
        h.runner.update(make_rollout(name="other"))


async def test_an_overrunning_evaluation_skips_missed_ticks() -> None:
    h = Harness()
    await h.start()

    async def slow() -> None:
        h.time.now += timedelta(seconds=45)  # the queries took 45s of a 30s interval

    h.provider.before_measure = slow
    with capture_logs() as logs:
        await h.time.tick()  # evaluation at 30s, ends at 75s
    h.provider.before_measure = None
    await h.time.tick()
    await h.runner.stop()

    # Grid 0, 30, 60, 90: the 60s tick was missed, so the next one is 90s (15s away), not
    # an immediate catch-up run.
    assert h.time.sleeps == [30.0, 15.0, 30.0]
    assert [r.summary.at for r in h.reports] == [T0 + timedelta(seconds=s) for s in (0, 30, 90)]
    overrun = [e for e in logs if e["event"] == "analysis evaluation overran its interval"]
    assert overrun == [
        {
            "event": "analysis evaluation overran its interval",
            "log_level": "warning",
            "rollout": "zai-proxy",
            "interval_s": 30.0,
            "skipped": 1,
        }
    ]


async def test_evaluations_never_overlap() -> None:
    h = Harness()
    release = asyncio.Event()
    in_measure = 0
    peak = 0

    async def slow() -> None:
        nonlocal in_measure, peak
        in_measure += 1
        peak = max(peak, in_measure)
        await release.wait()
        in_measure -= 1

    h.provider.before_measure = slow
    h.runner.start()
    manual = asyncio.create_task(h.runner.evaluate_once())
    await until(lambda: len(h.provider.measured) == 1)
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(h.provider.measured) == 1  # the manual evaluation waits for the loop's
    release.set()
    await manual
    await h.time.until_sleeping()
    await h.runner.stop()
    assert peak == 1
    assert len(h.reports) == 2


async def test_stop_leaves_no_tasks() -> None:
    before = other_tasks()
    h = Harness()
    await h.start()
    assert h.runner.running
    await h.runner.stop()
    assert not h.runner.running
    assert other_tasks() == before
    await h.runner.stop()  # idempotent


async def test_stop_cancels_an_evaluation_in_progress() -> None:
    before = other_tasks()
    h = Harness()
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def hang() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    h.provider.before_measure = hang
    h.runner.start()
    await asyncio.wait_for(entered.wait(), WAIT)
    await h.runner.stop()
    assert cancelled.is_set()
    assert h.reports == []
    assert other_tasks() == before


async def test_stop_does_not_swallow_its_own_cancellation() -> None:
    h = Harness()
    entered = asyncio.Event()

    async def stubborn() -> None:
        # Cleanup that takes a while after being cancelled, so stop() is still waiting.
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            raise

    h.provider.before_measure = stubborn
    h.runner.start()
    loop_task = h.runner._task
    assert loop_task is not None
    await asyncio.wait_for(entered.wait(), WAIT)
    stopper = asyncio.create_task(h.runner.stop())
    await asyncio.sleep(0)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    await asyncio.gather(loop_task, return_exceptions=True)
    assert loop_task.cancelled()


async def test_start_twice_runs_one_loop() -> None:
    h = Harness()
    await h.start()
    h.runner.start()
    for _ in range(10):
        await asyncio.sleep(0)
    await h.runner.stop()
    assert len(h.reports) == 1


async def test_callback_exception_does_not_kill_the_loop() -> None:
    calls: list[AnalysisReport] = []

    def explode(report: AnalysisReport) -> None:
        calls.append(report)
        if len(calls) == 1:
            raise RuntimeError("reconciler queue is closed")

    h = Harness(on_result=explode)
    with capture_logs() as logs:
        await h.start()
        await h.time.tick()
    await h.runner.stop()
    assert len(calls) == 2
    failures = [e for e in logs if e["event"] == "analysis callback failed"]
    assert len(failures) == 1
    assert failures[0]["rollout"] == "zai-proxy"
    assert failures[0]["log_level"] == "error"
    assert failures[0]["exc_info"] is True


async def test_async_callback_is_awaited() -> None:
    queue: asyncio.Queue[AnalysisReport] = asyncio.Queue()
    h = Harness(on_result=queue.put)
    await h.start()
    await h.runner.stop()
    assert queue.qsize() == 1


async def test_stop_from_the_callback() -> None:
    reports: list[AnalysisReport] = []

    async def stop_from_callback(report: AnalysisReport) -> None:
        reports.append(report)
        await h.runner.stop()

    h = Harness(on_result=stop_from_callback)
    h.runner.start()
    task = h.runner._task
    assert task is not None
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert len(reports) == 1
    assert not h.runner.running


async def test_a_provider_that_raises_gives_error_verdicts() -> None:
    h = Harness()

    async def broken() -> None:
        raise RuntimeError("bug in provider")

    h.provider.before_measure = broken
    with capture_logs() as logs:
        await h.start()
    h.provider.before_measure = None
    await h.time.tick()
    await h.runner.stop()
    assert [r.verdict for r in h.reports] == [Verdict.ERROR, Verdict.PASS]
    assert "provider failed: RuntimeError('bug in provider')" in h.reports[0].summary.explain()
    assert any(e["event"] == "analysis provider failed" for e in logs)


async def test_capacity_samples_are_exposed_when_a_gate_is_configured() -> None:
    gate = {
        "capacity": {"gauge": {"metric": "zai_proxy_rate_limit_requests_per_second"}},
        "demand": {"rate": {"metric": "zai_proxy_requests_total"}},
    }
    rollout = make_rollout()
    rollout = rollout.model_copy(
        update={
            "analysis": rollout.analysis.model_copy(
                update={"capacity_gate": CapacityGate.model_validate(gate)}
            )
        }
    )
    h = Harness(rollout)
    assert h.runner.capacity is None
    await h.start()
    await h.runner.stop()
    expected = (Sample(12.5), Sample(30.0, requests=3600))
    assert h.runner.capacity == expected
    assert (h.reports[0].capacity, h.reports[0].demand) == expected
    assert h.provider.capacity_calls == [(rollout.analysis.capacity_gate, timedelta(minutes=2))]


async def test_no_capacity_query_without_a_gate() -> None:
    h = Harness()
    await h.start()
    await h.runner.stop()
    assert h.provider.capacity_calls == []
    assert h.reports[0].capacity is None and h.runner.capacity is None


async def test_one_structured_log_line_per_evaluation() -> None:
    h = Harness()
    h.provider.values["bad-gateway-ratio"] = Sample(0.2, requests=1000)
    with capture_logs() as logs:
        await h.start()
        await h.time.tick()
    await h.runner.stop()
    lines = [e for e in logs if e["event"] == "analysis evaluated"]
    assert len(lines) == 2
    first = lines[0]
    assert first["rollout"] == "zai-proxy"
    assert first["step"] == 0
    assert first["verdict"] == "inconclusive"
    assert first["at"] == T0.isoformat()
    assert first["metrics"] == [
        {
            "name": "bad-gateway-ratio",
            "verdict": "inconclusive",
            "value": 0.2,
            "stable": None,
            "threshold": "<= 0.05",
            "reason": "0.2 (95% bounds 0.18..0.222 of 1000 requests) vs <= 0.05; "
            "breaching for 0s of 60s",
        }
    ]
    assert "capacity" not in first


async def test_a_clock_stepping_back_never_stretches_the_sleep() -> None:
    h = Harness()
    await h.start()
    h.time.now -= timedelta(hours=1)  # e.g. an NTP correction of the wall clock
    await h.time.tick()
    await h.runner.stop()
    assert h.time.sleeps == [30.0, 30.0]


async def test_late_wake_ups_do_not_stretch_for() -> None:
    """Each evaluation is stamped with its scheduled tick: wake-up jitter cannot add an interval."""
    h = Harness()
    h.provider.values["bad-gateway-ratio"] = Sample(0.2, requests=1000)
    await h.start()
    for _ in range(2):
        h.time.now -= timedelta(milliseconds=3)  # the sleep ends a little early each time
        await h.time.tick()
    await h.runner.stop()
    assert [r.summary.at for r in h.reports] == [T0 + timedelta(seconds=s) for s in (0, 30, 60)]
    # 60s of a 60s `for:` at the third evaluation, not 59.994s.
    assert h.verdicts("bad-gateway-ratio")[-1] is Verdict.FAIL


async def test_spread_runners_of_one_template_share_a_grid_and_pass_the_tick() -> None:
    first = Harness(spread=True)
    first.runner.start()
    await first.time.until_sleeping()
    wait = first.time.sleeps[0]
    assert 0 <= wait < 30  # the next point of the 30s grid
    await first.time.tick()
    await first.time.tick()
    await first.runner.stop()
    at = [r.summary.at for r in first.reports]
    assert at == [T0 + timedelta(seconds=wait + s) for s in (0, 30)]
    # On the template's grid: the same offset from the epoch, whatever the rollout's name.
    offset = template_offset(make_rollout().analysis, timedelta(seconds=30))
    assert all(
        (a.timestamp() - offset.total_seconds()) % 30 == pytest.approx(0, abs=1e-6) for a in at
    )
    assert first.provider.ticks == at  # scheduled: the provider may share the queries
    other = Harness(make_rollout(name="another", service="another"), spread=True)
    other.runner.start()
    await other.time.until_sleeping()
    await other.time.tick()
    await other.runner.stop()
    assert other.reports[0].summary.at == at[0]  # another rollout, the same tick
    # Another template (another window) sits elsewhere on the interval.
    changed = make_rollout().analysis.model_copy(update={"window": timedelta(minutes=5)})
    assert template_offset(changed, timedelta(seconds=30)) != offset


async def test_spread_runner_late_from_its_evaluation_skips_to_the_next_grid_point() -> None:
    h = Harness(spread=True)
    slow = timedelta(seconds=45)  # one evaluation takes longer than an interval

    async def stall() -> None:
        if len(h.provider.measured) == 1:
            h.time.now += slow

    h.provider.before_measure = stall
    h.runner.start()
    await h.time.until_sleeping()
    await h.time.tick()  # the slow first evaluation
    await h.time.tick()
    await h.runner.stop()
    first, second = (r.summary.at for r in h.reports)
    assert second - first == timedelta(seconds=60)  # the missed grid point is skipped


def test_next_tick_is_on_the_grid_and_stays_put_on_it() -> None:
    offset = timedelta(seconds=7)
    interval = timedelta(seconds=30)
    tick = next_tick(T0, interval, offset)
    assert T0 <= tick < T0 + interval
    assert (tick.timestamp() - 7) % 30 == pytest.approx(0, abs=1e-6)
    assert next_tick(tick, interval, offset) == tick
    assert next_tick(tick + timedelta(microseconds=1), interval, offset) == tick + interval


# -- an evaluation out of schedule at the end of a hold -------------------------------------


async def test_evaluate_soon_evaluates_at_once_and_leaves_the_grid_alone() -> None:
    h = Harness()
    await h.start()  # evaluated at T0, sleeping until T0+30s
    hold_end = T0 + timedelta(seconds=12)
    h.time.now = hold_end  # the hold ends between two scheduled evaluations
    assert h.runner.evaluate_soon(hold_end)
    await until(lambda: len(h.reports) == 2)
    assert h.reports[1].summary.at == hold_end
    # Already judged at (or after) the hold end: nothing more to do.
    assert not h.runner.evaluate_soon(hold_end)
    assert not h.runner.evaluate_soon(hold_end - timedelta(seconds=1))
    # The grid goes on as before (the fake sleep adds its whole length to the clock, so step
    # the clock back to where that sleep began).
    h.time.now = T0
    await h.time.tick()
    await h.runner.stop()
    assert [r.summary.at for r in h.reports] == [T0, hold_end, T0 + timedelta(seconds=30)]
    assert h.time.sleeps == [30.0, 30.0]


async def test_evaluate_soon_waits_for_an_evaluation_in_progress_and_never_doubles() -> None:
    h = Harness()
    release = asyncio.Event()

    async def slow() -> None:
        await release.wait()

    await h.start()
    h.provider.before_measure = slow
    h.time.release()  # the T0+30s evaluation starts and blocks in the provider
    await until(lambda: len(h.provider.measured) == 2)
    # It began before the hold end at T0+31s: one more evaluation is needed, and only one.
    h.time.now = T0 + timedelta(seconds=31)
    assert h.runner.evaluate_soon(T0 + timedelta(seconds=31))
    assert not h.runner.evaluate_soon(T0 + timedelta(seconds=31))  # one is pending
    h.provider.before_measure = None
    release.set()
    await until(lambda: len(h.reports) == 3)
    assert [r.summary.at for r in h.reports] == [
        T0,
        T0 + timedelta(seconds=30),
        T0 + timedelta(seconds=31),
    ]
    # An evaluation that began at or after the hold end needs no second one.
    assert not h.runner.evaluate_soon(T0 + timedelta(seconds=31))
    await h.runner.stop()


async def test_evaluate_soon_needs_a_running_loop_and_stop_cancels_it() -> None:
    before = other_tasks()
    h = Harness()
    assert not h.runner.evaluate_soon(T0)  # not started
    await h.start()
    entered = asyncio.Event()

    async def hang() -> None:
        entered.set()
        await asyncio.Event().wait()

    h.provider.before_measure = hang
    assert h.runner.evaluate_soon(T0 + timedelta(seconds=5))
    await asyncio.wait_for(entered.wait(), WAIT)
    await h.runner.stop()
    assert other_tasks() == before
    assert not h.runner.evaluate_soon(T0 + timedelta(seconds=5))


async def test_the_rollouts_confidence_reaches_the_verdict() -> None:
    """6.5 % of 1000 against max 5 %: a breach beyond doubt at 95 %, not at 99 %."""
    spec = make_rollout().model_dump(by_alias=True, mode="json")
    spec["analysis"]["metrics"][0]["for"] = "0s"
    verdicts = []
    for confidence in (0.95, 0.99):
        spec["analysis"]["confidence"] = confidence
        h = Harness(Rollout.model_validate(spec))
        h.provider.values["bad-gateway-ratio"] = Sample(0.065, requests=1000)
        await h.start()
        await h.runner.stop()
        verdicts.append(h.verdicts("bad-gateway-ratio")[0])
        assert f"{confidence * 100:g}% bounds" in h.reports[0].summary.metrics[0].reason
    assert verdicts == [Verdict.FAIL, Verdict.INCONCLUSIVE]
