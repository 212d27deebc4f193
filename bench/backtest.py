"""`ptc backtest`: one range query per compiled query vs. instant queries at every tick.

The backtest test's data set (three namespaces of zai-proxy pods, a 502 incident at T;
tests/integration/backtest_data.py) is stretched over --hours ending at T + 30m, backfilled with
promtool and served by a real Prometheus. The zai-proxy rollout's analysis (3 metrics with
compare + the capacity gate: 13 queries per evaluation) is then replayed over the whole period
at its 30 s interval, two ways:

* range: `run_backtest` - 13 `query_range` requests, then the runner over the fetched data;
* instant: the controller's `AnalysisRunner` with the stock `PrometheusProvider` at each tick
  (``time=`` per query), as the controller itself would have queried.

Both must give the same verdict at every tick (checked and printed); the wall times are the
figures. Printed, never asserted: timings on a shared machine are evidence, not tests.

Usage: python bench/backtest.py [--quick] [--hours H]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine
from controller.core.config.load import load_config
from controller.core.config.model import PrometheusSettings
from controller.ops.backtest.model import make_spec
from controller.ops.backtest.run import run_backtest
from controller.shell.analysis_runner import AnalysisReport, AnalysisRunner
from controller.shell.log import configure_logging
from controller.shell.providers.prometheus import PrometheusProvider
from tests.integration.backtest_data import END, openmetrics
from tests.integration.promdata import backfilled_prometheus

REPO = Path(__file__).resolve().parent.parent


async def instant(spec_ticks: list[datetime], rollout: object, url: str) -> tuple[float, list[str]]:
    """The controller's way: every tick, every query, at `time=` that tick."""
    now = spec_ticks[0]
    provider = PrometheusProvider(PrometheusSettings(url=url), at=lambda: now)
    reports: list[AnalysisReport] = []
    runner = AnalysisRunner(rollout, provider, reports.append, clock=lambda: now)  # type: ignore[arg-type]
    began = time.monotonic()
    try:
        for tick in spec_ticks:
            now = tick
            await runner.evaluate_once(at=tick)
    finally:
        await provider.close()
    return time.monotonic() - began, [r.summary.verdict.value for r in reports]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=6.0, help="period length (6)")
    parser.add_argument("--quick", action="store_true", help="1 hour")
    args = parser.parse_args()
    hours = 1.0 if args.quick else args.hours
    start = END - int(hours * 3600)
    rollout = load_config(REPO / "config" / "zai-proxy.yaml").config.rollout("zai-proxy")
    rollout = rollout.model_copy(update={"namespace": "bt-incident"})
    configure_logging("console", "error")  # the runner logs every evaluation at info
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        began = time.monotonic()
        async with backfilled_prometheus(Path(tmp), openmetrics(start, END)) as prom:
            print(f"backfilled {hours:g} h of data in {time.monotonic() - began:.1f}s")
            # Ticks off the 15 s sample grid, from one window after the data starts.
            spec = make_spec(
                rollout,
                datetime.fromtimestamp(start + 125, UTC),
                datetime.fromtimestamp(END - 5, UTC),
            )
            ticks = spec.ticks()
            settings = PrometheusSettings(url=prom.url)
            result = await run_backtest(spec, settings, timeout=600)
            range_total = result.fetch_seconds + result.replay_seconds
            instant_s, instant_verdicts = await instant(ticks, rollout, prom.url)
    range_verdicts = [t.summary.verdict.value for t in result.ticks]
    same = sum(a == b for a, b in zip(range_verdicts, instant_verdicts, strict=True))
    queries = len(result.queries)
    print(f"period {hours:g} h every 30 s: {len(ticks)} ticks, {queries} compiled queries")
    print(
        f"range:   {queries} query_range requests in {result.fetch_seconds:.2f}s, replay "
        f"{result.replay_seconds:.2f}s, total {range_total:.2f}s "
        f"({range_total / len(ticks) * 1000:.2f} ms per tick)"
    )
    print(
        f"instant: {queries * len(ticks)} instant queries in {instant_s:.2f}s "
        f"({instant_s / len(ticks) * 1000:.2f} ms per tick)"
    )
    print(f"speed-up {instant_s / range_total:.1f}x; same verdict at {same}/{len(ticks)} ticks")
    first = result.summary.first_action
    print(f"first action: {first.action} at {first.at:%H:%M:%S}" if first else "no action")


if __name__ == "__main__":
    asyncio.run(main())
