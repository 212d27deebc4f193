"""The composed sandbox: scenario, traffic through the Service, control endpoint, Prometheus."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import kr8s
import pytest

from controller.sandbox.faults import Latency
from controller.sandbox.scenarios import wait_ready, zai_proxy_scenario
from controller.sandbox.world import Sandbox, SandboxOptions
from controller.sandbox.zaiproxy import ProxyTuning

FAST = ProxyTuning(retry_backoff=0.001)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    options = SandboxOptions(
        workdir=tmp_path,
        ready_delay=0.05,
        termination_grace=0.05,
        traffic_rate=0,
        prometheus=False,
        seed=7,
        tuning=FAST,
    )
    async with Sandbox(options) as world:
        yield world


async def test_zai_proxy_scenario_routes_traffic_through_the_service(sandbox: Sandbox) -> None:
    setup = await zai_proxy_scenario(sandbox)
    assert (setup.namespace, setup.service) == ("devpod", "zai-proxy")
    sandbox.traffic.send(400)
    assert set(sandbox.traffic.stats.by_deployment) == {"zai-proxy"}  # v2 has no pods yet

    # Scale v2 to 4 through the scale subresource, as ptc will.
    assert sandbox.kubeconfig is not None
    api = await kr8s.asyncio.api(kubeconfig=str(sandbox.kubeconfig))
    dep = await kr8s.asyncio.objects.Deployment.get("zai-proxy-v2", namespace="devpod", api=api)
    await dep.async_patch({"spec": {"replicas": 4}}, subresource="scale")
    await wait_ready(sandbox, "devpod", "zai-proxy-v2", 4, timeout=5)
    await sandbox.endpoints_propagated()  # kube-proxy applies the new endpoints a moment later
    sandbox.traffic.reset_stats()
    sandbox.traffic.send(4000)
    share = sandbox.traffic.stats.share("zai-proxy-v2")
    assert 0.45 < share < 0.55  # 4 of 8 Ready endpoints, uniform like kube-proxy

    # Pinning the selector moves every request as soon as kube-proxy has applied it.
    svc = await kr8s.asyncio.objects.Service.get("zai-proxy", namespace="devpod", api=api)
    await svc.async_patch({"spec": {"selector": {"app": "zai-proxy", "version": "v2"}}})
    await sandbox.endpoints_propagated()
    sandbox.traffic.reset_stats()
    sandbox.traffic.send(500)
    assert set(sandbox.traffic.stats.by_deployment) == {"zai-proxy-v2"}
    await api._session.aclose()


async def test_faults_and_traffic_through_the_control_endpoint(sandbox: Sandbox) -> None:
    await zai_proxy_scenario(
        sandbox, canary_replicas=2, canary_rate_limit_initial=1000, stable_rate_limit_initial=1000
    )
    assert sandbox.control is not None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        url = sandbox.control.url
        async with http.post(
            f"{url}/faults",
            json={"namespace": "devpod", "deployment": "zai-proxy-v2", "error502": 1.0},
        ) as r:
            assert r.status == 200 and (await r.json())["error502"] == 1.0
        sandbox.traffic.send(600)
        v2 = sandbox.traffic.stats.by_deployment["zai-proxy-v2"]
        # Every v2 request is answered the upstream's 502, passed through at once.
        assert v2[200] == 0 and v2[502] >= 50
        assert sandbox.traffic.stats.by_deployment["zai-proxy"][502] == 0
        async with http.post(
            f"{url}/faults",
            json={
                "namespace": "devpod",
                "deployment": "zai-proxy",
                "upstream429": 0.3,
                "concurrency429": 0.1,
                "retryAfter": 2,
            },
        ) as r:
            body = await r.json()
            assert r.status == 200, body
            assert (body["upstream429"], body["concurrency429"], body["retryAfter"]) == (
                0.3,
                0.1,
                2,
            )
        stable = sandbox.faults.get("devpod", "zai-proxy")
        assert (stable.upstream_429, stable.concurrency_429, stable.retry_after) == (0.3, 0.1, 2)
        for bad, why in (
            ({"error502": "lots"}, "must be a number"),
            ({"error502": 0.7, "dropped": 0.7}, "must not exceed 1"),
            ({"retryAfter": 1.5}, "retry_after"),
            ({"upstream_429": 0.1}, "unknown fields"),
        ):
            payload = {"namespace": "devpod", "deployment": "zai-proxy", **bad}
            async with http.post(f"{url}/faults", json=payload) as r:
                assert r.status == 400 and why in (await r.json())["error"], bad
        async with http.post(f"{url}/traffic", json={"rate": 35}) as r:
            assert r.status == 200
        assert sandbox.traffic.rate == 35
        async with http.post(f"{url}/traffic", data="nope") as r:
            assert r.status == 400 and "JSON" in (await r.json())["error"]
        async with http.delete(f"{url}/faults?namespace=devpod&deployment=zai-proxy-v2") as r:
            assert r.status == 200
        assert sandbox.faults.get("devpod", "zai-proxy-v2").error_502 == 0.0
        async with http.get(f"{url}/status") as r:
            status = await r.json()
        assert status["traffic"]["service"] == "devpod/zai-proxy"
        assert len(status["pods"]) == 6


@pytest.mark.slow
@pytest.mark.prometheus
async def test_prometheus_sees_the_502_ratio_by_variant(tmp_path: Path) -> None:
    """Real Prometheus scraping the sandbox's Deployments: v2's 502 ratio converges to 0.20."""
    options = SandboxOptions(
        workdir=tmp_path,
        ready_delay=0.05,
        termination_grace=0.05,
        traffic_rate=150,
        prometheus=True,
        scrape_interval=1.0,
        seed=3,
        tuning=FAST,
    )
    async with Sandbox(options) as world:
        await zai_proxy_scenario(
            world,
            stable_replicas=2,
            canary_replicas=2,
            canary_rate_limit_initial=1000,
            stable_rate_limit_initial=1000,
        )
        world.faults.update("devpod", "zai-proxy-v2", error_502=0.2, latency=Latency(0.001, 0.002))
        assert world.prometheus is not None
        total = 'sum by (variant) (rate(zai_proxy_requests_total{namespace="devpod"}[10s]))'
        bad = (
            "sum by (variant) (rate(zai_proxy_requests_total"
            '{namespace="devpod",status_code="502"}[10s]))'
        )
        # v1 never answered 502, so its 502 series does not exist: "or ... * 0" makes it a 0.
        query = f"({bad} or {total} * 0) / {total}"

        def converged(samples: list) -> bool:  # type: ignore[type-arg]
            by = {s.labels.get("variant"): s.value for s in samples}
            return "v2" in by and "production" in by and abs(by["v2"] - 0.2) <= 0.05

        samples = await world.prometheus.wait_for_data(query, timeout=40, predicate=converged)
        by_variant = {s.labels["variant"]: s.value for s in samples}
        assert by_variant["v2"] == pytest.approx(0.2, abs=0.05)
        assert by_variant["production"] < 0.01
        # The pods' Kubernetes labels arrive as Prometheus labels (kubernetes_sd + labelmap).
        up = await world.prometheus.query('up{namespace="devpod",version="v2"}')
        assert len(up) == 2 and all(s.labels["pod"].startswith("zai-proxy-v2-") for s in up)


@pytest.mark.slow
def test_ptc_sandbox_command_runs_until_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.ops.cli",
            "sandbox",
            "--scenario",
            "zai-proxy",
            "--workdir",
            str(tmp_path),
            "--no-prometheus",
            "--ready-delay",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        text = "".join(lines)
        assert f"kubeconfig:  {tmp_path / 'kubeconfig'}" in text
        assert "control:     http://127.0.0.1:" in text
        assert (tmp_path / "kubeconfig").exists()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "stopping" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sandbox_help_mentions_its_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "controller.ops.cli", "sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("--scenario", "--port", "--control-port", "--rate", "--prometheus"):
        assert option in result.stdout
    assert asyncio  # imported for fixtures' event loop
