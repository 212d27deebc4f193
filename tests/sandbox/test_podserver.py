"""Pod runtime: each simulated pod serves /health and /metrics on its own loopback IP."""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from controller.sandbox.faults import FaultProfile, Latency
from controller.sandbox.podserver import PodEvent, PodRuntimeError, SimulatedPodRuntime
from tests.sandbox.conftest_pods import (
    RUNTIME_NETWORK,
    FakeClock,
    make_pod,
    other_tasks,
    parse_exposition,
)

TIMEOUT = aiohttp.ClientTimeout(total=5)


@pytest.fixture
async def runtime() -> AsyncIterator[SimulatedPodRuntime]:
    async with SimulatedPodRuntime(seed=1) as rt:
        yield rt


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


async def test_health_answers_on_the_pod_ip_with_the_real_json_shape(
    runtime: SimulatedPodRuntime, http: aiohttp.ClientSession
) -> None:
    pod = make_pod("zai-proxy-7d9f-abcde", env={"RATE_LIMIT_INITIAL": "3"})
    ip = await runtime.start_pod(pod, "zai-proxy")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(RUNTIME_NETWORK)
    async with http.get(f"http://{ip}:8080/health") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        body = await response.json()
    assert body["status"] == "ok"
    assert body["rate_limit"]["current_rate"] == 3.0
    assert body["rate_limit"]["ceiling"] == 50.0
    assert body["rate_limit"]["hold"] == 49.0
    assert body["rate_limit"]["restored_from_state"] is False
    assert body["quota"] == {"enabled": False, "fresh": False}


async def test_metrics_are_served_in_the_text_format(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with SimulatedPodRuntime(seed=1, clock=clock) as runtime:
        pod = make_pod("zai-proxy-v2-1", env={"DEPLOYMENT_VARIANT": "v2"})
        ip = await runtime.start_pod(pod, "zai-proxy-v2")
        proxy = runtime.pod_by_ip(ip)
        assert proxy is not None
        outcome = proxy.handle()
        clock.advance(outcome.latency)  # counted when it is answered, as the real proxy does
        text = await _metrics_text(http, ip)
    _, samples = parse_exposition(text)
    labels = {"method": "POST", "path": "/v1/messages", "status_code": "200", "variant": "v2"}
    assert ("zai_proxy_requests_total", labels, 1.0) in samples


async def _metrics_text(http: aiohttp.ClientSession, ip: str) -> str:
    async with http.get(f"http://{ip}:8080/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


async def test_each_pod_gets_its_own_ip_on_its_container_port(
    runtime: SimulatedPodRuntime, http: aiohttp.ClientSession
) -> None:
    a = await runtime.start_pod(make_pod("a", env={"RATE_LIMIT_INITIAL": "2"}), "d")
    b = await runtime.start_pod(make_pod("b", env={"RATE_LIMIT_INITIAL": "7"}, port=9090), "d")
    assert a != b
    rates = []
    for url in (f"http://{a}:8080/health", f"http://{b}:9090/health"):
        async with http.get(url) as response:
            rates.append((await response.json())["rate_limit"]["current_rate"])
    assert rates == [2.0, 7.0]
    assert [p.name for p in runtime.pods()] == ["a", "b"]
    assert runtime.endpoint("default", "b") is not None
    assert await runtime.start_pod(make_pod("a"), "d") == a  # idempotent


async def test_a_stopped_pod_refuses_new_and_kept_alive_connections(
    runtime: SimulatedPodRuntime, http: aiohttp.ClientSession
) -> None:
    ip = await runtime.start_pod(make_pod("doomed"), "d")
    async with http.get(f"http://{ip}:8080/health") as response:  # leaves a pooled connection
        assert response.status == 200
    await runtime.stop_pod("default", "doomed")
    assert runtime.pod_by_ip(ip) is None
    with pytest.raises(aiohttp.ClientError):
        async with http.get(f"http://{ip}:8080/health") as response:
            await response.read()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as fresh:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with fresh.get(f"http://{ip}:8080/health") as response:
                await response.read()
    await runtime.stop_pod("default", "doomed")  # stopping twice is harmless


async def test_listeners_hear_starts_and_stops(runtime: SimulatedPodRuntime) -> None:
    events: list[PodEvent] = []
    runtime.add_listener(events.append)

    def broken(event: PodEvent) -> None:
        raise RuntimeError("a broken listener must not break pods")

    runtime.add_listener(broken)
    ip = await runtime.start_pod(make_pod("p", labels={"app": "zai-proxy"}), "zai-proxy")
    await runtime.stop_pod("default", "p")
    assert [(e.kind, e.pod.ip, e.pod.labels["app"]) for e in events] == [
        ("started", ip, "zai-proxy"),
        ("stopped", ip, "zai-proxy"),
    ]


async def test_an_address_in_use_is_skipped() -> None:
    # A random /30 and an ephemeral port keep parallel test processes out of each other's way.
    base = ipaddress.ip_address("127.99.0.0") + 4 * random.randrange(1 << 14)
    network = ipaddress.ip_network(f"{base}/30")
    first, second = (str(base + 1), str(base + 2))
    with socket.socket() as squatter:
        squatter.bind((first, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        async with SimulatedPodRuntime(network=str(network)) as rt:
            # Only .1 and .2 are candidates and .1 is taken.
            assert await rt.start_pod(make_pod("p", port=port), "d") == second
            with pytest.raises(PodRuntimeError, match="no free loopback address"):
                await rt.start_pod(make_pod("q", port=port), "d")


async def test_close_stops_everything_and_leaks_no_tasks() -> None:
    rt = SimulatedPodRuntime()
    ips = [await rt.start_pod(make_pod(f"p{i}"), "d") for i in range(5)]
    await rt.close()
    assert rt.pods() == []
    for ip in ips:
        with socket.socket() as probe:
            probe.settimeout(2)
            assert probe.connect_ex((ip, 8080)) != 0
    assert other_tasks() == set()


def _with_volume(pod: dict[str, object], volume: dict[str, object]) -> dict[str, object]:
    spec = pod["spec"]
    assert isinstance(spec, dict)
    spec["volumes"] = [{"name": "state", **volume}]
    spec["containers"][0]["volumeMounts"] = [{"name": "state", "mountPath": "/var/lib/zai-proxy"}]
    return pod


async def _learn_a_ceiling(runtime: SimulatedPodRuntime, clock: FakeClock, ip: str) -> float:
    proxy = runtime.pod_by_ip(ip)
    assert proxy is not None
    runtime.faults.default = FaultProfile(upstream_429=1.0, latency=Latency(0.001, 0.001))
    for _ in range(40):
        proxy.handle()
        clock.advance(1.0)
    runtime.faults.default = FaultProfile()
    assert proxy.limiter.restored_from_state is False
    return proxy.limiter.current_rate


@pytest.mark.parametrize(
    ("volume", "resumes"),
    [
        (None, False),  # the container's own layer: a restarted container starts empty
        ({"emptyDir": {}}, True),  # lives as long as the pod
        ({"persistentVolumeClaim": {"claimName": "zai-state"}}, True),
        ({"hostPath": {"path": "/var/lib/zai-proxy"}}, True),
    ],
    ids=["no-volume", "emptyDir", "pvc", "hostPath"],
)
async def test_a_restarted_process_resumes_from_a_state_file_on_a_volume_that_outlived_it(
    volume: dict[str, object] | None, resumes: bool
) -> None:
    clock = FakeClock()
    async with SimulatedPodRuntime(seed=1, clock=clock) as runtime:
        pod = make_pod("zai-proxy-abc12-aaaaa", env={"RATE_LIMIT_INITIAL": "2"})
        ip = await runtime.start_pod(pod if volume is None else _with_volume(pod, volume), "d")
        hold = await _learn_a_ceiling(runtime, clock, ip)
        restarted = runtime.restart_process("default", "zai-proxy-abc12-aaaaa")
        assert runtime.pod_by_ip(ip) is restarted
        assert restarted.limiter.restored_from_state is resumes
        assert restarted.limiter.current_rate == (hold if resumes else 2.0)
        assert runtime.endpoint("default", "zai-proxy-abc12-aaaaa").process == 2  # type: ignore[union-attr]


async def test_a_hostpath_state_file_is_shared_by_every_pod_on_the_node() -> None:
    clock = FakeClock()
    async with SimulatedPodRuntime(seed=1, clock=clock) as runtime:
        host = {"hostPath": {"path": "/var/lib/zai-proxy"}}
        stable = _with_volume(make_pod("zai-proxy-abc12-aaaaa"), host)
        ip = await runtime.start_pod(stable, "zai-proxy")
        hold = await _learn_a_ceiling(runtime, clock, ip)
        # A brand-new canary pod on the same node starts from stable's learned hold, not cold.
        canary = _with_volume(
            make_pod("zai-proxy-v2-abc12-bbbbb", env={"RATE_LIMIT_INITIAL": "2"}), host
        )
        proxy = runtime.pod_by_ip(await runtime.start_pod(canary, "zai-proxy-v2"))
        assert proxy is not None and proxy.limiter.current_rate == hold


async def test_admin_reset_over_http_answers_like_the_real_binary(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    async with SimulatedPodRuntime(seed=1, clock=clock) as runtime:
        ip = await runtime.start_pod(make_pod("p", env={"RATE_LIMIT_INITIAL": "10"}), "d")
        await _learn_a_ceiling(runtime, clock, ip)
        async with http.post(f"http://{ip}:8080/admin/reset-rate-limit") as response:
            assert response.status == 200
            assert await response.text() == '{"current_rate":10,"status":"reset"}\n'
        async with http.get(f"http://{ip}:8080/admin/reset-rate-limit") as response:
            assert response.status == 405
        async with http.get(f"http://{ip}:8080/health") as response:
            rate_limit = (await response.json())["rate_limit"]
        assert (rate_limit["current_rate"], rate_limit["ceiling"], rate_limit["hold"]) == (
            10,
            10,
            9.8,
        )
        _, samples = parse_exposition(await _metrics_text(http, ip))
        (gauge,) = [v for n, _, v in samples if n == "zai_proxy_rate_limit_requests_per_second"]
        assert gauge != 10  # stale: the reset does not set the gauge
