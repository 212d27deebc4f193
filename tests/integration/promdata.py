"""Real Prometheus on a fixed data set: OpenMetrics text -> TSDB blocks -> a running server.

`promtool tsdb create-blocks-from openmetrics` turns samples with explicit timestamps into
blocks; the `prometheus` binary then serves them read-only, ready in ~0.1 s, and queries at a
fixed time (or over a fixed range) return exact values. Shared by the provider and backtest
tests.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controller.sandbox.prometheus import PrometheusServer


@asynccontextmanager
async def backfilled_prometheus(workdir: Path, openmetrics: str) -> AsyncIterator[PrometheusServer]:
    """Prometheus serving `openmetrics` (skips the test without the binaries)."""
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.skip("needs the prometheus and promtool binaries (Debian package prometheus)")
    (workdir / "data.om").write_text(openmetrics)
    await asyncio.to_thread(
        subprocess.run,
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "data.om", "data"],
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=60,
    )
    config = workdir / "prometheus.yml"
    config.write_text('{"global": {"scrape_interval": "15s"}, "scrape_configs": []}\n')
    # Time-based retention counts from the newest block, but be explicit: never drop the data.
    server = PrometheusServer(
        config, workdir=workdir, extra_args=["--storage.tsdb.retention.time=100y"]
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
