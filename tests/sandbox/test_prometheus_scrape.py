"""Prometheus integration: file_sd targets, generated config, and real scrapes of simulated pods."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Literal

import pytest

from controller.sandbox.faults import FaultProfile, FaultProfiles, Latency
from controller.sandbox.podserver import PodEndpoint, PodEvent, PodRoster, SimulatedPodRuntime
from controller.sandbox.prometheus import (
    FileSDTargets,
    PrometheusError,
    PrometheusNotInstalled,
    PrometheusQueryError,
    PrometheusServer,
    Sample,
    prometheus_config,
    sanitize_label_name,
    target_group,
    write_prometheus_config,
)
from controller.sandbox.traffic import TrafficGenerator
from controller.sandbox.zaiproxy import ProxyTuning
from tests.sandbox.conftest_pods import make_pod, other_tasks

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus (Debian package) not installed"
)


def test_label_names_are_sanitised_like_kubernetes_sd() -> None:
    assert sanitize_label_name("app") == "app"
    assert sanitize_label_name("pod-template-hash") == "pod_template_hash"
    assert sanitize_label_name("app.kubernetes.io/name") == "app_kubernetes_io_name"
    assert sanitize_label_name("1st") == "_1st"


async def test_file_sd_follows_pods_as_they_come_and_go(tmp_path: Path) -> None:
    sd_file = tmp_path / "sd" / "targets.json"
    async with SimulatedPodRuntime() as runtime:
        targets = FileSDTargets(sd_file, runtime)
        assert json.loads(sd_file.read_text()) == []
        labels = {"app": "zai-proxy", "version": "v2", "pod-template-hash": "7d9f", "pod": "x"}
        ip = await runtime.start_pod(make_pod("zai-proxy-v2-7d9f-a", labels=labels), "zai-proxy-v2")
        assert json.loads(sd_file.read_text()) == [
            {
                "targets": [f"{ip}:8080"],
                "labels": {
                    "app": "zai-proxy",
                    "version": "v2",
                    "pod_template_hash": "7d9f",
                    "namespace": "default",
                    "pod": "zai-proxy-v2-7d9f-a",  # identity wins over a pod label named pod
                },
            }
        ]
        await runtime.stop_pod("default", "zai-proxy-v2-7d9f-a")
        assert json.loads(sd_file.read_text()) == []
        targets.detach()
        await runtime.start_pod(make_pod("later"), "d")
        assert json.loads(sd_file.read_text()) == []
    assert [p.name for p in sd_file.parent.iterdir()] == ["targets.json"]  # no temp leftovers


class _Runtime(PodRoster):
    """What FileSDTargets reads of a pod runtime: its pods and their start/stop events."""

    def fire(self, kind: Literal["started", "stopped"], pod: PodEndpoint) -> None:
        if kind == "started":
            self._by_name[(pod.namespace, pod.name)] = pod
        else:
            del self._by_name[(pod.namespace, pod.name)]
        self._notify(PodEvent(kind, pod))


def _endpoint(i: int, process: int = 1) -> PodEndpoint:
    name = f"app-{i:04d}-5d8f-abcde"
    labels = {"app": f"app-{i:04d}", "pod-template-hash": "5d8f"}
    pod = make_pod(name, labels=labels)
    return PodEndpoint(
        "fleet", name, f"app-{i:04d}", f"127.64.0.{i % 250}", 8080, labels, None, pod, process
    )  # type: ignore[arg-type]


def test_file_sd_builds_each_pods_entry_once_however_many_pods_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fleet's ramp starts thousands of pods; rebuilding every entry on each start made the
    # sandbox's file_sd O(pods) per pod. The file must still list exactly the running pods.
    runtime = _Runtime()
    targets = FileSDTargets(tmp_path / "targets.json", runtime)
    built: list[str] = []

    def counted(pod: PodEndpoint) -> dict[str, object]:
        built.append(pod.name)
        return target_group(pod)

    monkeypatch.setattr("controller.sandbox.prometheus.target_group", counted)
    for i in range(300):
        runtime.fire("started", _endpoint(i))
    runtime.fire("stopped", _endpoint(7))
    runtime.fire("stopped", _endpoint(9))
    runtime.fire("started", _endpoint(9, process=2))  # a restarted process: stopped, started
    assert len(built) == 301
    want = [target_group(p) for p in sorted(runtime.pods(), key=lambda p: (p.namespace, p.name))]
    assert json.loads(targets.path.read_text()) == want
    assert len(want) == 299


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_generated_config_passes_promtool(tmp_path: Path) -> None:
    sd_file = tmp_path / "targets.json"
    sd_file.write_text("[]")
    config = write_prometheus_config(tmp_path / "prometheus.yml", sd_file, scrape_interval=0.5)
    assert prometheus_config(sd_file)["scrape_configs"][0]["scrape_interval"] == "1s"
    assert json.loads(config.read_text())["global"]["scrape_interval"] == "500ms"
    result = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_missing_binary_says_how_to_install(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path / "cfg.yml", binary="prometheus-not-here", workdir=tmp_path)
    with pytest.raises(PrometheusNotInstalled, match="apt-get install -y --no-install-recommends"):
        await server.start()


RATIO_502 = (
    'sum by (variant) (rate(zai_proxy_requests_total{status_code="502"}[10s]))'
    " or sum by (variant) (rate(zai_proxy_requests_total[10s])) * 0"
)
RATIO = f"({RATIO_502}) / sum by (variant) (rate(zai_proxy_requests_total[10s]))"


def by_variant(samples: list[Sample]) -> dict[str, float]:
    return {s.labels.get("variant", ""): s.value for s in samples}


def converged(samples: list[Sample]) -> bool:
    ratios = by_variant(samples)
    return (
        set(ratios) == {"production", "v2"}
        and abs(ratios["v2"] - 0.20) <= 0.05
        and ratios["production"] <= 0.01
    )


@pytest.mark.prometheus
@pytest.mark.slow
@needs_prometheus
async def test_real_prometheus_sees_the_canary_502_ratio_by_variant(tmp_path: Path) -> None:
    faults = FaultProfiles(FaultProfile(latency=Latency(0.02, 0.05)))
    faults.set("default", "zai-proxy-v2", FaultProfile(error_502=0.2))
    env = {"RATE_LIMIT_INITIAL": "500", "RATE_LIMIT_MAX": "500", "MAX_WORKERS": "1000"}
    tuning = ProxyTuning(retry_backoff=0.01)
    async with asyncio.timeout(40), SimulatedPodRuntime(faults, tuning=tuning, seed=11) as runtime:
        for deployment, version, variant in (
            ("zai-proxy", "v1", "production"),
            ("zai-proxy-v2", "v2", "v2"),
        ):
            for i in range(2):
                labels = {"app": "zai-proxy", "version": version, "pod-template-hash": "abc12"}
                pod_env = {**env, "DEPLOYMENT_VARIANT": variant}
                pod = make_pod(f"{deployment}-abc12-{i}", env=pod_env, labels=labels)
                await runtime.start_pod(pod, deployment)

        prometheus = PrometheusServer.for_pods(runtime, tmp_path, scrape_interval=1.0)
        traffic = TrafficGenerator(
            lambda: [p.ip for p in runtime.pods()], runtime.pod_by_ip, rate=200.0, seed=5
        )
        async with prometheus, traffic:
            await prometheus.wait_for_data(RATIO, timeout=20, predicate=converged)
            # Judge once the 10 s window is full of samples (~1000 v2 requests, sigma ~0.013),
            # so the check cannot pass by polling an early noisy ratio until it looks right.
            await prometheus.wait_for_data(
                "min(count_over_time(up[10s]))", timeout=15, predicate=lambda r: r[0].value >= 10
            )
            ratios = by_variant(await prometheus.query(RATIO))
            assert ratios["v2"] == pytest.approx(0.20, abs=0.05)
            assert ratios["production"] == 0.0

            # Targets carry the identity and relabelled pod labels a cluster setup gives.
            info = await prometheus.query('zai_proxy_build_info{variant="v2"}')
            assert {s.labels["pod"] for s in info} == {
                "zai-proxy-v2-abc12-0",
                "zai-proxy-v2-abc12-1",
            }
            assert {
                (s.labels["namespace"], s.labels["app"], s.labels["version"]) for s in info
            } == {("default", "zai-proxy", "v2")}
            assert {s.labels["pod_template_hash"] for s in info} == {"abc12"}
            assert (await prometheus.query("sum(up)"))[0].value == 4.0

            # A removed pod leaves the file_sd file, so Prometheus stops scraping it.
            await runtime.stop_pod("default", "zai-proxy-abc12-0")
            await prometheus.wait_for_data(
                "count(up)", timeout=10, predicate=lambda r: r[0].value == 3
            )

            with pytest.raises(PrometheusQueryError, match="bad_data"):
                await prometheus.query("sum(")
        assert not prometheus.running
    assert other_tasks() == set()


@needs_prometheus
async def test_a_bad_config_fails_start_with_the_log_tail(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs: [{job_name: x, scrape_interval: nonsense}]\n")
    server = PrometheusServer(config, ready_timeout=10)
    with pytest.raises(PrometheusError, match=r"(?s)did not become ready.*nonsense"):
        await server.start()
    assert not server.running
