"""Counter ratios count a series' first events: real Prometheus over a backfilled data set.

zai-proxy creates a pod's ``status_code="502"`` series with its first 502 (and a new pod's every
series with its first request), so no sample holds the 0 before it. ``increase()`` only sees
differences between samples and extrapolates the rest: on a real cluster it counted 15 of a
fleet's 20 502s in a window. The counterRatio template counts per series instead
(`controller.core.analysis.templates.counted`); these tests hold it to exact counts.

Samples every 15 s; the window is the zai-proxy pack's 2 m ending at T, so the samples at
T-120 s and T bound it exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from controller.core.analysis.templates import counted
from controller.core.config.load import load_config
from controller.core.config.model import Rollout
from controller.sandbox.prometheus import PrometheusServer
from controller.shell.providers.prometheus import PrometheusProvider
from tests.integration.promdata import backfilled_prometheus

pytestmark = [pytest.mark.prometheus, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
T = 1_767_225_600  # 2026-01-01T00:00:00Z
AT = datetime.fromtimestamp(T, UTC)
STEP = 15
HISTORY = 20 * 60  # steady series start this long before T

FLEET = "ptc-fleet502"
CHURN = "ptc-churn"
STABLE = ("zai-proxy-7d9f8b6c5-aaaaa", "zai-proxy-7d9f8b6c5-bbbbb", "zai-proxy-7d9f8b6c5-ccccc")
STABLE4 = "zai-proxy-7d9f8b6c5-ddddd"
CANARY = "zai-proxy-v2-5f6b7c8d9-klmno"


@dataclass(frozen=True)
class Series:
    """One counter series: its pod, status code and cumulative value at offsets from T."""

    namespace: str
    pod: str
    status: str
    values: dict[int, int]


def steady(namespace: str, pod: str, status: str, per_step: int, until: int = 0) -> Series:
    """A series that exists from long before the window and grows evenly."""
    times = range(-HISTORY, until + 1, STEP)
    return Series(namespace, pod, status, {t: 1000 + per_step * i for i, t in enumerate(times)})


# Issue 18: a fleet-wide upstream fault starts inside the window. Each stable pod's 502 series
# is created by its first 502; 20 happen in the window. Every pod also answers 120 200s.
FLEET_502S = {
    STABLE[0]: {-90: 1, -75: 1, -60: 2, -45: 2, -30: 3, -15: 4, 0: 5},
    STABLE[1]: {-75: 2, -60: 3, -45: 3, -30: 4, -15: 6, 0: 7},
    STABLE[2]: {-45: 2, -30: 2, -15: 3, 0: 6},
    STABLE4: {0: 2},  # first scraped at the window's end: one sample, nothing for increase()
}
# The canary pod is new: created 100 s ago, so all its series start in the window.
CANARY_200S = {t: 16 + 14 * i for i, t in enumerate(range(-90, 1, STEP))}  # 100 at T
CANARY_502S = {-90: 1, -45: 3, 0: 5}

DATA = [
    *(steady(FLEET, pod, "200", 15) for pod in (*STABLE, STABLE4)),
    *(Series(FLEET, pod, "502", values) for pod, values in FLEET_502S.items()),
    Series(FLEET, CANARY, "200", CANARY_200S),
    Series(FLEET, CANARY, "502", CANARY_502S),
    # Churn: a pod scaled away 60 s into the window, one whose process restarted in it, one
    # whose 502 series last counted before the window.
    steady(CHURN, "gone", "200", 15, until=-60),
    Series(
        CHURN,
        "restarted",
        "200",
        {-135: 1000, -120: 1010, -105: 1020}
        | {t: 4 + 10 * i for i, t in enumerate(range(-90, 1, STEP))},
    ),
    steady(CHURN, "quiet", "502", 0),
]


def openmetrics(series: list[Series]) -> str:
    lines = ["# TYPE zai_proxy_requests counter"]
    for s in series:
        labels = (
            f'{{method="POST",namespace="{s.namespace}",path="/v1/messages",pod="{s.pod}",'
            f'status_code="{s.status}",variant="production"}}'
        )
        lines += [
            f"zai_proxy_requests_total{labels} {v} {T + t}" for t, v in sorted(s.values.items())
        ]
    return "\n".join([*lines, "# EOF", ""])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("prom-first")
    async with backfilled_prometheus(workdir, openmetrics(DATA)) as server:
        yield server


async def total(prometheus: PrometheusServer, promql: str) -> float:
    result = await prometheus.query(promql, at=float(T))
    assert len(result) == 1, result
    return result[0].value


async def per_series(prometheus: PrometheusServer, promql: str) -> dict[tuple[str, str], float]:
    result = await prometheus.query(promql, at=float(T))
    return {(s.labels["pod"], s.labels["status_code"]): s.value for s in result}


def stable_502s() -> str:
    matchers = f'namespace="{FLEET}",pod=~"zai-proxy-7d9.*",status_code="502"'
    return f"zai_proxy_requests_total{{{matchers}}}"


async def test_the_fleets_first_502s_are_counted(prometheus: PrometheusServer) -> None:
    """Issue 18: 20 real 502s on stable; increase() counts 14.5 of them, counted() all 20."""
    old = await total(prometheus, f"sum(increase({stable_502s()}[120s]))")
    new = await total(prometheus, f"sum({counted(stable_502s(), '120s')})")
    assert old == pytest.approx(14.5)
    assert new == 20
    assert await per_series(prometheus, counted(stable_502s(), "120s")) == {
        (pod, "502"): max(values.values()) for pod, values in FLEET_502S.items()
    }


def zai_rollout(namespace: str) -> Rollout:
    config = load_config(REPO / "config" / "zai-proxy.yaml").config
    return config.rollout("zai-proxy").model_copy(update={"namespace": namespace})


async def test_the_zai_proxy_ratio_counts_every_request_on_both_sides(
    prometheus: PrometheusServer,
) -> None:
    config = load_config(REPO / "config" / "zai-proxy.yaml").config
    settings = config.prometheus.model_copy(update={"url": prometheus.url})
    rollout = zai_rollout(FLEET)
    provider = PrometheusProvider(settings, at=lambda: AT)
    try:
        measured = await provider.measure(rollout, rollout.analysis)
    finally:
        await provider.close()
    m502 = measured["server-error-ratio"]
    assert m502.stable is not None
    # Stable: 4 pods x 120 200s + 20 502s. The canary pod is new: 100 200s and 5 502s, all
    # of them in series that started in the window.
    assert m502.stable.requests == 500 and m502.stable.value == pytest.approx(20 / 500)
    assert m502.canary.requests == 105 and m502.canary.value == pytest.approx(5 / 105)


async def test_pods_that_leave_or_restart_in_the_window(prometheus: PrometheusServer) -> None:
    series = f'zai_proxy_requests_total{{namespace="{CHURN}"}}'
    got = await per_series(prometheus, counted(series, "120s"))
    assert got == {
        # Scaled away 60 s into the window: its events until its last sample.
        ("gone", "200"): 4 * 15,
        # Restarted (1020 -> 4): last minus start would be negative; increase() takes over and
        # counts 10 before the restart, 4 up to its first scrape after, 60 since.
        ("restarted", "200"): 74,
        # Nothing new in the window: 0, not missing.
        ("quiet", "502"): 0,
    }
