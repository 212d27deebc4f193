"""The per-rollout analysis loop: every interval, measure -> evaluate -> report.

One `AnalysisRunner` per running rollout. Each evaluation takes a snapshot of the rollout spec
and step (so `set_step()` and `update()` take effect at the next evaluation, never halfway
through one), asks the provider for the metrics (and the capacity gate's capacity and demand),
judges them with the pure evaluator - carrying the previous summary so ``for:`` persists
across evaluations - logs one structured line and hands an `AnalysisReport` to the callback.

Scheduling is on a fixed grid (``start, start + interval, ...``) like a Prometheus rule group:
an evaluation that overruns skips the ticks it missed instead of running several back to back,
and evaluations never overlap. The daemon's runners (``spread=True``) use the template's grid
instead (`next_tick`: the epoch plus `template_offset` plus whole intervals), so every rollout
of one template evaluates at the same tick and the provider can answer them all from one shared
query, while other templates sit elsewhere in the interval. Time comes from the injected `clock`
and `sleep`, so tests step through hours of intervals without waiting. One evaluation can be
asked for out of schedule (`evaluate_soon`): a step passes only on an evaluation taken at or
after its hold's end, which the grid may reach an interval later; the grid itself is not moved.

When the controller is behind, evaluations queue at an optional shared gate (``gate``): one
whose previous summary has a breach clock running (it may confirm a rollback) goes before
routine ones, and routine evaluations beyond a budget wait (:mod:`controller.core.priority`).

The capacity gate's verdict needs the *next* step's weight, which only the reconciler knows;
the runner therefore reports the raw (capacity, demand) samples and the reconciler calls
`check_capacity`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

import structlog

from controller.core.analysis.evaluate import (
    AnalysisSummary,
    Measurement,
    Sample,
    evaluate,
)
from controller.core.analysis.grid import next_tick, template_offset
from controller.core.analysis.share import ShareReading
from controller.core.config.model import Analysis, CapacityGate, Rollout
from controller.core.priority import evaluation_urgency
from controller.shell.analysis_report import AnalysisReport, log_report, restored
from controller.shell.gate import PriorityGate
from controller.shell.providers.provider import Provider

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

# Config validation rejects a zero interval; this floor only keeps a bad value from spinning.
MIN_INTERVAL = timedelta(seconds=1)


def utc_now() -> datetime:
    """The default clock: timezone-aware UTC."""
    return datetime.now(UTC)


OnResult = Callable[[AnalysisReport], Awaitable[None] | None]


class AnalysisRunner:
    """Evaluates one rollout's analysis every interval until stopped."""

    def __init__(
        self,
        rollout: Rollout,
        provider: Provider,
        on_result: OnResult,
        *,
        step: int = 0,
        previous: AnalysisSummary | None = None,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
        spread: bool = False,
        gate: PriorityGate | None = None,
    ) -> None:
        """`previous` restores ``for:`` state (e.g. persisted before a controller restart)."""
        self._gate = gate
        self._rollout = rollout
        self._step = step
        self._provider = provider
        self._on_result = on_result
        self._clock = clock
        self._sleep = sleep
        # Evaluate on the template's grid (`next_tick`) and let the provider share queries.
        self._spread = spread
        self._previous = previous
        self._last: AnalysisReport | None = None
        self._started_at: datetime | None = None  # `at` of the newest evaluation begun
        self._task: asyncio.Task[None] | None = None
        self._soon: asyncio.Task[None] | None = None
        # evaluate_once() may be called by hand (e.g. a manual retry) while the loop runs;
        # evaluations must still not overlap, or `previous` would be raced.
        self._lock = asyncio.Lock()

    # -- what the caller controls ---------------------------------------------------------

    @property
    def rollout(self) -> Rollout:
        """The spec the next evaluation will use."""
        return self._rollout

    @property
    def step(self) -> int:
        """The step the next evaluation will judge."""
        return self._step

    def set_step(self, index: int) -> None:
        """Judge step `index` from the next evaluation on (its analysis override applies)."""
        if not 0 <= index < len(self._rollout.steps):
            raise IndexError(
                f"rollout {self._rollout.name!r} has steps 0..{len(self._rollout.steps) - 1}, "
                f"not {index}"
            )
        self._step = index

    def update(self, rollout: Rollout) -> None:
        """Use a reloaded spec from the next evaluation on.

        ``for:`` state carries over a reload (a breach does not restart its clock because a
        comment changed), but not over a change of the canary or stable being compared.
        """
        if rollout.name != self._rollout.name:
            raise ValueError(f"runner for {self._rollout.name!r} got rollout {rollout.name!r}")
        if (rollout.canary, rollout.stable, rollout.namespace) != (
            self._rollout.canary,
            self._rollout.stable,
            self._rollout.namespace,
        ):
            self._previous = None
        self._rollout = rollout
        self._step = min(self._step, len(rollout.steps) - 1)

    # -- what the caller reads ------------------------------------------------------------

    @property
    def last(self) -> AnalysisReport | None:
        """The latest report, None before the first evaluation."""
        return self._last

    @property
    def breach_since(self) -> Mapping[str, datetime]:
        """When each breaching metric's ``for:`` clock started (persist it to survive restarts)."""
        return dict(self._previous.breach_since()) if self._previous is not None else {}

    @property
    def capacity(self) -> tuple[Sample, Sample] | None:
        """The latest (canary capacity, Service demand), None without a capacity gate."""
        last = self._last
        if last is None or last.capacity is None or last.demand is None:
            return None
        return last.capacity, last.demand

    @property
    def running(self) -> bool:
        """Whether the loop task is alive."""
        return self._task is not None and not self._task.done()

    # -- the loop -------------------------------------------------------------------------

    def start(self) -> None:
        """Start evaluating now and every interval after (no-op if already running)."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"analysis-runner:{self._rollout.name}"
        )

    def evaluate_soon(self, since: datetime) -> bool:
        """Evaluate now, out of schedule, unless an evaluation at or after `since` has begun.

        For the end of a hold: the reconciler waits for a verdict evaluated at or after it, and
        the next scheduled evaluation may be an interval away. True if one was started; at most
        one is pending at a time, and it waits for an evaluation in progress (they never
        overlap). No-op while the loop is not running.
        """
        if not self.running:
            return False
        if self._started_at is not None and self._started_at >= since:
            return False
        if self._soon is not None and not self._soon.done():
            return False
        self._soon = asyncio.get_running_loop().create_task(
            self._evaluate_soon(), name=f"analysis-soon:{self._rollout.name}"
        )
        return True

    async def _evaluate_soon(self) -> None:
        try:
            await self.evaluate_once()
        except Exception:
            log.exception("analysis evaluation crashed", rollout=self._rollout.name)

    async def stop(self) -> None:
        """Cancel the loop (and any evaluation in progress) and wait until it has ended."""
        soon, self._soon = self._soon, None
        if soon is not None and not soon.done():
            soon.cancel()
            if soon is not asyncio.current_task():
                # Its cancellation is its result; ours, if we are cancelled, still propagates.
                await asyncio.gather(soon, return_exceptions=True)
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        if task is asyncio.current_task():
            return  # stop() called from the callback: the cancellation ends us on return
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves: do not swallow that

    async def _loop(self) -> None:
        if self._spread:
            await self._aligned_loop()
            return
        due = self._clock()
        while True:
            await self._scheduled(due, tick=False)
            interval = max(self._analysis().interval, MIN_INTERVAL)
            due += interval
            now = self._clock()
            if due < now:
                missed = math.floor((now - due) / interval) + 1
                due += missed * interval
                self._overran(interval, missed)
            # Never sleep longer than one interval, even if the clock stepped backwards.
            await self._sleep(min(due - now, interval).total_seconds())

    async def _aligned_loop(self) -> None:
        # Hundreds of runners: every rollout of one template evaluates on the same grid (its
        # template's offset), so their queries are one shared query per tick (the provider
        # coalesces calls of the same `tick`); different templates spread over the interval.
        interval, offset = self._grid()
        due = next_tick(self._clock(), interval, offset)
        while True:
            now = self._clock()
            if due - now > interval:  # the clock stepped backwards: back onto the grid
                due = next_tick(now, interval, offset)
            if due > now:
                await self._sleep((due - now).total_seconds())
                continue  # read the clock again: a sleep may end early
            await self._scheduled(due, tick=True)
            interval, offset = self._grid()  # a new step may judge at another interval
            following = next_tick(due + MIN_INTERVAL / 1000, interval, offset)
            now = self._clock()
            if following < now:
                missed = math.floor((now - following) / interval) + 1
                following = next_tick(now, interval, offset)
                self._overran(interval, missed)
            due = following

    def _grid(self) -> tuple[timedelta, timedelta]:
        analysis = self._analysis()
        interval = max(analysis.interval, MIN_INTERVAL)
        return interval, template_offset(analysis, interval)

    async def _scheduled(self, due: datetime, *, tick: bool) -> None:
        try:
            await self.evaluate_once(at=due, tick=tick)
        except Exception:
            # evaluate_once() handles provider and callback failures itself; this is a
            # bug elsewhere. Log it and keep the schedule rather than die silently.
            log.exception("analysis evaluation crashed", rollout=self._rollout.name)

    def _overran(self, interval: timedelta, missed: int) -> None:
        log.warning(
            "analysis evaluation overran its interval",
            rollout=self._rollout.name,
            interval_s=interval.total_seconds(),
            skipped=missed,
        )

    def _analysis(self) -> Analysis:
        return self._rollout.step_analysis(self._step)

    async def evaluate_once(
        self, at: datetime | None = None, *, tick: bool = False
    ) -> AnalysisReport:
        """Measure, judge and report once; failures of the provider become ERROR verdicts.

        `at` is the evaluation's time (default: now). The loop passes its scheduled tick, so
        `for:` durations are whole multiples of the interval rather than missing by the few
        milliseconds a wake-up jitters (a 4s `for:` at 2s intervals fails on the third
        evaluation, not the fourth). With `tick`, `at` is a grid time of the rollout's
        template and the provider may answer from queries shared with other rollouts.
        """
        async with self._lock:
            # Snapshot: a set_step()/update() during the queries applies to the next one.
            rollout, step = self._rollout, self._step
            analysis = rollout.step_analysis(step)
            at = at or self._clock()
            self._started_at = at
            shared = at if tick else None
            gate = analysis.capacity_gate
            level = evaluation_urgency(breaching=bool(self.breach_since))
            async with (
                self._gate.slot(level) if self._gate is not None else contextlib.nullcontext()
            ):
                measurements, capacity, share = await asyncio.gather(
                    self._measure(rollout, analysis, shared),
                    self._capacity(rollout, analysis, shared) if gate is not None else _none(),
                    self._share(rollout, analysis, at, shared),
                )
            summary = evaluate(
                analysis.metrics,
                measurements,
                analysis.min_requests,
                at,
                self._previous,
                analysis.confidence,
            )
            self._previous = summary
            report = AnalysisReport(
                rollout=rollout.name,
                spec_hash=rollout.spec_hash(),
                step=step,
                summary=summary,
                capacity=capacity[0] if capacity is not None else None,
                demand=capacity[1] if capacity is not None else None,
                share=share,
            )
            self._last = report
            elapsed = self._clock() - at
            log_report(report, elapsed)
            await self._deliver(report)
            return report

    async def _measure(
        self, rollout: Rollout, analysis: Analysis, tick: datetime | None
    ) -> dict[str, Measurement]:
        try:
            return await self._provider.measure(rollout, analysis, tick=tick)
        except Exception as exc:
            # Providers should not raise; if one does, every metric is an error (never a pass).
            log.exception("analysis provider failed", rollout=rollout.name, call="measure")
            failed = Sample(None, error=f"provider failed: {exc!r}")
            return {m.name: Measurement(m.name, failed) for m in analysis.metrics}

    async def _capacity(
        self, rollout: Rollout, analysis: Analysis, tick: datetime | None
    ) -> tuple[Sample, Sample]:
        assert analysis.capacity_gate is not None
        try:
            return await self._provider.capacity(
                rollout, analysis.capacity_gate, analysis.window, tick=tick
            )
        except Exception as exc:
            log.exception("analysis provider failed", rollout=rollout.name, call="capacity")
            failed = Sample(None, error=f"provider failed: {exc!r}")
            return failed, failed

    async def _share(
        self, rollout: Rollout, analysis: Analysis, at: datetime, tick: datetime | None
    ) -> ShareReading | None:
        share = analysis.traffic_share
        if share is None:
            return None
        # The provider's capacity call samples one source on the canary and another on the
        # whole Service: exactly the two request rates whose ratio is the share.
        source = share.source()
        pair = CapacityGate(capacity=source, demand=source)
        try:
            canary, service = await self._provider.capacity(
                rollout, pair, analysis.window, tick=tick
            )
        except Exception as exc:
            log.exception("analysis provider failed", rollout=rollout.name, call="share")
            failed = Sample(None, error=f"provider failed: {exc!r}")
            return ShareReading(failed, failed, at)
        return ShareReading(canary, service, at)

    async def _deliver(self, report: AnalysisReport) -> None:
        try:
            result = self._on_result(report)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # The reconciler's problem must not stop the analysis of the rollout.
            log.exception("analysis callback failed", rollout=report.rollout, step=report.step)


async def _none() -> None:
    return None


__all__ = [
    "AnalysisReport",
    "AnalysisRunner",
    "Clock",
    "OnResult",
    "Sleep",
    "restored",
    "utc_now",
]
