"""DirectProvider against PrometheusProvider on the same live sandbox world.

Both providers watch the same simulated zai-proxy pods: real Prometheus scrapes them every
second through file_sd, the direct provider scrapes them itself every second. v1 (2 pods) is
healthy; v2's upstream (2 pods) answers 10% of attempts 502 and 5% 429 (retried by the proxy:
the pressure metric counts them) with slower latency. Traffic
is 100 req/s through the Service. After a full analysis window of data on both sides, the
values of the zai-proxy rollout's metrics (window shortened to 20 s) must agree per side.

Tolerances, and why:

* ratios (5xx, 429, upstream 429s per request): +-0.03 absolute. Both count nearly the same
  requests: their windows differ only by the scrapes at each edge (up to 1 s of 20 s) and both
  extrapolate the same way, so the difference is a few requests out of ~1000 per side
  (expected < 0.01).
* p95 latency: +-20% relative. The quantile interpolates inside wide buckets ((0.5, 1],
  (1, 2.5]); a few requests more or less at a window edge move the rank inside a bucket.
* capacity (gauge): +-5% relative. The simulated limits do not adjust in this test (the limiter
  window is longer than the test), so any difference is a bug rather than timing.
* demand (rate) and request counts: +-15% relative. A rate over 20 s at 100 req/s is sensitive
  to which scrapes fall in the window and to the traffic generator's jitter.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from controller.core.analysis.evaluate import Sample
from controller.core.config.load import load_config
from controller.core.config.model import PrometheusSettings, Rollout, Side
from controller.sandbox.faults import Latency
from controller.sandbox.scenarios import zai_proxy_scenario
from controller.sandbox.world import Sandbox, SandboxOptions
from controller.sandbox.zaiproxy import ProxyTuning
from controller.shell.providers.direct import DirectProvider, PodsFn
from controller.shell.providers.prometheus import PrometheusProvider
from controller.shell.providers.scrape import PodTarget

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary"),
]

REPO = Path(__file__).resolve().parents[2]
NS = "devpod"
WINDOW = timedelta(seconds=20)
# Limits never adjust during the test (window far longer than it); retries are instant.
STEADY = ProxyTuning(adjustment_window=3600.0, retry_backoff=0.001)

RATIO_ABS = 0.03
P95_REL = 0.20
GAUGE_REL = 0.05
RATE_REL = 0.15


def zai_rollout() -> Rollout:
    base = load_config(REPO / "config" / "zai-proxy.yaml").config.rollout("zai-proxy")
    analysis = base.analysis.model_copy(update={"window": WINDOW})
    return base.model_copy(update={"namespace": NS, "analysis": analysis})


def pod_targets(sandbox: Sandbox) -> PodsFn:
    """pods(rollout, side) over the sandbox's running pods, by Deployment."""

    def pods(rollout: Rollout, side: Side) -> Sequence[PodTarget]:
        wanted = {
            Side.CANARY: {rollout.canary.deployment},
            Side.STABLE: {rollout.stable.deployment},
            Side.SERVICE: {rollout.canary.deployment, rollout.stable.deployment},
        }[side]
        return [
            PodTarget(p.name, p.ip, p.port, labels={"namespace": p.namespace})
            for p in sandbox.runtime.pods()
            if p.namespace == rollout.namespace and p.deployment in wanted
        ]

    return pods


def show(s: Sample | None) -> str:
    if s is None:
        return "-"
    if s.error:
        return f"error {s.error}"
    value = "none" if s.value is None else f"{s.value:.4f}"
    return value if s.requests is None else f"{value} ({s.requests:.0f} req)"


def close_rel(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


async def test_direct_agrees_with_prometheus(tmp_path: Path) -> None:
    options = SandboxOptions(
        workdir=tmp_path / "sandbox",
        ready_delay=0.3,
        termination_grace=0.3,
        traffic_rate=100,
        prometheus=True,
        scrape_interval=1.0,
        seed=5,
        tuning=STEADY,
    )
    rollout = zai_rollout()
    gate = rollout.analysis.capacity_gate
    assert gate is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Sandbox(options) as sandbox:
        assert sandbox.prometheus is not None
        await zai_proxy_scenario(
            sandbox,
            stable_replicas=2,
            canary_replicas=2,
            stable_rate_limit_initial=500,
            canary_rate_limit_initial=40,
        )
        sandbox.faults.update(
            NS, "zai-proxy-v2", error_502=0.10, upstream_429=0.05, latency=Latency(0.2, 0.6)
        )
        direct = DirectProvider(
            pod_targets(sandbox),
            scrape_interval=timedelta(seconds=1),
            timeout=2.0,
        )
        prom = PrometheusProvider(
            PrometheusSettings(url=sandbox.prometheus.url, timeout=timedelta(seconds=5))
        )
        try:
            await direct.measure(rollout, rollout.analysis)  # starts scraping
            # Wait (bounded) until Prometheus holds a whole window (+2 s) of v2 scrapes.
            await sandbox.prometheus.wait_for_data(
                "min(count_over_time("
                'zai_proxy_rate_limit_requests_per_second{pod=~"zai-proxy-v2-.*"}[30s]))',
                timeout=40,
                predicate=lambda r: r[0].value >= WINDOW.total_seconds() + 2,
                interval=0.5,
            )
            rounds = []
            for _ in range(3):
                d_m, p_m, d_c, p_c = await asyncio.gather(
                    direct.measure(rollout, rollout.analysis),
                    prom.measure(rollout, rollout.analysis),
                    direct.capacity(rollout, gate, WINDOW),
                    prom.capacity(rollout, gate, WINDOW),
                )
                rounds.append((d_m, p_m, d_c, p_c))
                await asyncio.sleep(2)
        finally:
            await direct.close()
            await prom.close()

    report = []
    failures = []
    for i, (d_m, p_m, d_c, p_c) in enumerate(rounds):
        for name in (
            "server-error-ratio",
            "rate-limited-ratio",
            "upstream-429-pressure",
            "p95-latency",
        ):
            for side in ("canary", "stable"):
                d = getattr(d_m[name], side)
                p = getattr(p_m[name], side)
                report.append(f"round {i} {name:20} {side:6} direct {show(d):24} prom {show(p)}")
                failures += compare(name, side, d, p)
        for label, d, p in (("capacity", d_c[0], p_c[0]), ("demand", d_c[1], p_c[1])):
            report.append(f"round {i} {label:20} {'':6} direct {show(d):24} prom {show(p)}")
            failures += compare(label, "", d, p)
    print("\n".join(report))
    print(f"total {loop.time() - started:.1f}s")
    assert not failures, "\n".join(failures + report)


def compare(name: str, side: str, d: Sample | None, p: Sample | None) -> list[str]:
    """What disagrees beyond the tolerances (an empty list when all is well)."""
    what = f"{name} {side}".strip()
    if d is None or p is None:
        return [f"{what}: missing sample (direct {d}, prometheus {p})"]
    if d.error or p.error or d.value is None or p.value is None:
        return [f"{what}: no value (direct {show(d)}, prometheus {show(p)})"]
    out = []
    if name.endswith(("ratio", "pressure")):
        if abs(d.value - p.value) > RATIO_ABS:
            out.append(f"{what}: {d.value:.4f} vs {p.value:.4f} differ by more than {RATIO_ABS}")
    elif name.startswith("p95"):
        if not close_rel(d.value, p.value, P95_REL):
            out.append(f"{what}: {d.value:.4f} vs {p.value:.4f} beyond {P95_REL:.0%}")
    elif name == "capacity":
        if not close_rel(d.value, p.value, GAUGE_REL):
            out.append(f"{what}: {d.value:.4f} vs {p.value:.4f} beyond {GAUGE_REL:.0%}")
    elif not close_rel(d.value, p.value, RATE_REL):
        out.append(f"{what}: {d.value:.4f} vs {p.value:.4f} beyond {RATE_REL:.0%}")
    if d.requests is not None and p.requests is not None:
        if not close_rel(d.requests, p.requests, RATE_REL):
            out.append(f"{what}: requests {d.requests:.0f} vs {p.requests:.0f}")
    elif (d.requests is None) != (p.requests is None):
        out.append(f"{what}: requests {d.requests} vs {p.requests}")
    return out
