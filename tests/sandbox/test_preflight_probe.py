"""The preflight's HTTP probe against simulated zai-proxy pods (real sockets, no cluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.core.config import Rollout, load_config
from controller.sandbox.podserver import SimulatedPodRuntime
from controller.shell.preflight import ProbeTarget, probe_pods
from tests.sandbox.conftest_pods import FakeClock, make_pod

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def pack() -> Rollout:
    return load_config(REPO / "config" / "zai-proxy.yaml").config.rollout("zai-proxy")


def with_preflight(**preflight: Any) -> Rollout:
    data = pack().model_dump(by_alias=True, mode="json")
    data["preflight"] = preflight
    return Rollout.model_validate(data)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def runtime(clock: FakeClock) -> AsyncIterator[SimulatedPodRuntime]:
    async with SimulatedPodRuntime(seed=3, clock=clock) as rt:
        yield rt


async def quiet_pod(runtime: SimulatedPodRuntime, age: timedelta) -> ProbeTarget:
    """A canary pod that has served no request, started `age` before NOW."""
    pod = make_pod("zai-proxy-v2-5d8f-a", namespace="devpod", env={"DEPLOYMENT_VARIANT": "v2"})
    ip = await runtime.start_pod(pod, "zai-proxy-v2")
    return ProbeTarget("zai-proxy-v2-5d8f-a", ip, 8080, NOW - age)


async def test_the_zai_proxy_pack_passes_a_pod_that_has_served_nothing(
    runtime: SimulatedPodRuntime,
) -> None:
    target = await quiet_pod(runtime, timedelta(minutes=5))
    found = await probe_pods(pack(), [target], now=NOW)
    assert found.problems == () and found.waiting == ()


async def test_requests_total_at_start_waits_then_fails_on_a_quiet_pod(
    runtime: SimulatedPodRuntime, clock: FakeClock
) -> None:
    strict = with_preflight(metrics={"atStart": ["zai_proxy_requests_total"]}, startGrace="30s")
    young = await quiet_pod(runtime, timedelta(seconds=3))
    found = await probe_pods(strict, [young], now=NOW)
    assert found.problems == ()
    assert found.waiting == (
        "pod zai-proxy-v2-5d8f-a: /metrics lacks zai_proxy_requests_total yet "
        "(pod younger than startGrace 30s)",
    )
    old = ProbeTarget(young.pod, young.ip, young.port, NOW - timedelta(minutes=2))
    found = await probe_pods(strict, [old], now=NOW)
    assert found.waiting == ()
    assert found.problems == (
        "pod zai-proxy-v2-5d8f-a: /metrics lacks zai_proxy_requests_total 2m after start; a "
        "family that appears only with traffic belongs in preflight.metrics.lazy",
    )
    # After its first request the same pod passes the same strict config.
    proxy = runtime.pod_by_ip(young.ip)
    assert proxy is not None
    clock.advance(proxy.handle().latency)  # counted once answered
    found = await probe_pods(strict, [old], now=NOW)
    assert found.problems == () and found.waiting == ()


async def test_a_pod_that_does_not_answer_is_waited_for_and_a_wrong_path_fails(
    runtime: SimulatedPodRuntime,
) -> None:
    target = await quiet_pod(runtime, timedelta(minutes=5))
    wrong_path = with_preflight(healthPath="/healthz", metrics={"atStart": []})
    found = await probe_pods(wrong_path, [target], now=NOW)
    assert found.waiting == ()
    assert found.problems == ("pod zai-proxy-v2-5d8f-a: /healthz answered 404",)
    await runtime.stop_pod("devpod", "zai-proxy-v2-5d8f-a")
    found = await probe_pods(pack(), [target], now=NOW, timeout=2.0)
    assert found.problems == ()
    assert len(found.waiting) == 1
    assert found.waiting[0].startswith(
        f"pod zai-proxy-v2-5d8f-a: http://{target.ip}:8080 did not answer: "
    )
