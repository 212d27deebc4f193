"""Run a backtest: list the runner's queries, fetch their ranges, replay the runner tick by tick.

1. **Record**: the step's analysis is measured once through a recording `ReplayProvider`, so
   the queries are exactly those the runner would send (same compilation, same sides).
2. **Fetch**: one ``query_range`` per query over the period, the ticks as its steps.
3. **Replay**: the controller's `AnalysisRunner` evaluates at every tick, its provider
   answering from the fetched ranges - so ``for:`` carries from tick to tick as it does in
   the controller; with a capacity gate, `check_capacity` judges its reading for the next
   step's weight as the reconciler does.

Nothing is written anywhere and Kubernetes is never asked: the config and Prometheus are
the only inputs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from controller.core.analysis.evaluate import check_capacity
from controller.core.config.model import PrometheusSettings
from controller.ops.backtest.fetch import FetchError, fetch_ranges
from controller.ops.backtest.model import BacktestResult, BacktestSpec, TickResult, summarise
from controller.ops.backtest.replay import ReplayProvider
from controller.shell.analysis_runner import AnalysisReport, AnalysisRunner

log = structlog.get_logger(__name__)

Progress = Callable[[str, int, int], None]  # (phase, done, total)
PROGRESS_EVERY = 50  # ticks between progress updates

# `@ start()` / `@ end()` are the range's ends in a range query but the evaluation time in
# an instant one: the only PromQL whose range answer differs from the instant answers.
_AT_MODIFIER = re.compile(r"@\s*(?:start|end)\s*\(\s*\)")


class BacktestTimeout(Exception):
    """The backtest did not finish within its --timeout (exit 1)."""


async def run_backtest(
    spec: BacktestSpec,
    settings: PrometheusSettings,
    *,
    timeout: float,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> BacktestResult:
    """Replay `spec`; FetchError when Prometheus cannot answer, BacktestTimeout past `timeout`."""
    began = time.monotonic()
    deadline = began + timeout
    rollout, analysis = spec.rollout, spec.analysis
    clock = _TickClock(spec.start)
    provider = ReplayProvider(settings, clock, spec.bindings)
    log.info(
        "backtest started",
        rollout=rollout.name,
        step=spec.step + 1,
        start=spec.start.isoformat(),
        end=spec.end.isoformat(),
        every_s=spec.every.total_seconds(),
    )
    ticks = spec.ticks()
    results: list[TickResult] = []
    gate = analysis.capacity_gate
    try:
        # Recording: one evaluation lists exactly the queries the runner sends.
        recorder = AnalysisRunner(rollout, provider, _ignore, step=spec.step, clock=clock)
        await recorder.evaluate_once()
        queries = tuple(provider.recorded)
        table = await fetch_ranges(
            settings,
            queries,
            spec.start,
            spec.end,
            spec.every,
            deadline=deadline,
            progress=(lambda done, total: progress("fetch", done, total)) if progress else None,
        )
        fetch_seconds = time.monotonic() - began
        provider.replay(table)
        runner = AnalysisRunner(rollout, provider, _ignore, step=spec.step, clock=clock)
        for i, at in enumerate(ticks):
            if time.monotonic() > deadline:
                raise BacktestTimeout(
                    f"the backtest did not finish within --timeout {timeout:g}s "
                    f"(evaluated {i} of {len(ticks)} ticks): raise --timeout or coarsen "
                    "with --step"
                )
            clock.at = at
            report = await runner.evaluate_once(at=at)
            capacity = None
            if gate is not None and report.capacity is not None and report.demand is not None:
                capacity = check_capacity(gate, report.capacity, report.demand, spec.next_weight)
            results.append(TickResult(at, report.summary, capacity))
            if progress is not None and ((i + 1) % PROGRESS_EVERY == 0 or i + 1 == len(ticks)):
                progress("evaluate", i + 1, len(ticks))
    finally:
        await provider.close()
    replay_seconds = time.monotonic() - began - fetch_seconds
    summary = summarise(spec, results)
    notes = _notes(spec, queries, table.errors, now or datetime.now(UTC)) + _no_data(results)
    first = summary.first_action
    log.info(
        "backtest finished",
        rollout=rollout.name,
        step=spec.step + 1,
        ticks=len(results),
        queries=len(queries),
        first_action=first.action if first else None,
        first_action_at=first.at.isoformat() if first else None,
        fetch_s=round(fetch_seconds, 3),
        replay_s=round(replay_seconds, 3),
    )
    return BacktestResult(
        spec=spec,
        prometheus=settings.url,
        queries=queries,
        ticks=tuple(results),
        summary=summary,
        notes=tuple(notes),
        fetch_seconds=fetch_seconds,
        replay_seconds=replay_seconds,
    )


def _ignore(report: AnalysisReport) -> None:
    """The runner's callback: the backtest reads each report from evaluate_once()."""


class _TickClock:
    """The runner's clock in a backtest: the tick being evaluated."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _no_data(ticks: list[TickResult]) -> list[str]:
    """Metrics whose canary had no value at any tick: most likely the wrong pods or namespace."""
    names: dict[str, bool] = {}
    for tick in ticks:
        for m in tick.summary.metrics:
            names[m.name] = names.get(m.name, False) or m.value is not None
    empty = [name for name, seen in names.items() if not seen]
    if not empty:
        return []
    return [
        f"canary had no data at any tick for {', '.join(empty)}: check --namespace and the pods "
        "(--deployments, --canary), or whether Prometheus still keeps this period"
    ]


def _notes(
    spec: BacktestSpec, queries: tuple[str, ...], errors: dict[str, str], now: datetime
) -> list[str]:
    notes = []
    if spec.analysis.provider == "direct":
        notes.append(
            "this rollout's analysis uses the direct provider (ptc scrapes the pods); the "
            "backtest reads the same metrics from Prometheus instead"
        )
    every, interval = spec.every.total_seconds(), spec.analysis.interval.total_seconds()
    if every > interval:
        notes.append(
            f"ticks every {every:g}s, coarser than the analysis interval {interval:g}s: `for:` "
            "is counted on the coarser grid and a breach shorter than a tick can be missed"
        )
    elif every < interval:
        notes.append(
            f"ticks every {every:g}s, finer than the analysis interval {interval:g}s: the "
            "controller judges less often, so its rollback can come up to one interval later"
        )
    if spec.end > now:
        notes.append("the period reaches into the future: ticks after now have no data")
    for promql in queries:
        if _AT_MODIFIER.search(promql):
            notes.append(
                f"query uses @ start()/@ end(), which mean the whole period's ends in a "
                f"backtest: {promql}"
            )
    for promql, error in errors.items():
        notes.append(f"Prometheus rejected a query (error at every tick): {error}: {promql}")
    return notes


__all__ = ["BacktestResult", "BacktestTimeout", "FetchError", "Progress", "run_backtest"]
