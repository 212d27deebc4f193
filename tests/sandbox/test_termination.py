"""Pod termination as on a real cluster: preStop, SIGTERM, endpoint propagation, dropped requests.

The real zai-proxy exits at once on SIGTERM. Without a preStop delay, the requests clients still
route to a deleted pod (their endpoint view lags the EndpointSlice) are refused, and those in
flight are reset; a preStop sleep longer than the propagation delay drops none.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from controller.sandbox.apierrors import ApiError
from controller.sandbox.apiserver import ApiServer
from controller.sandbox.faults import FaultProfile, FaultProfiles, Latency
from controller.sandbox.kubeproxy import EndpointPropagation
from controller.sandbox.scenarios import zai_proxy_scenario
from controller.sandbox.traffic import TrafficGenerator, TrafficStats
from controller.sandbox.workload import NullPodRuntime, Workload
from controller.sandbox.world import Sandbox, SandboxOptions
from controller.sandbox.zaiproxy import ProxyTuning, SimulatedZaiProxy
from tests.sandbox.conftest import deployment, wait_until
from tests.sandbox.conftest_pods import FakeClock, make_pod

Obj = dict[str, Any]
ROOMY = {"RATE_LIMIT_INITIAL": "100000", "RATE_LIMIT_MAX": "100000", "MAX_WORKERS": "100000"}

# --- kube-proxy's lagging view ---------------------------------------------------------------


def test_each_endpoint_change_reaches_clients_after_its_delay_in_order() -> None:
    clock = FakeClock(0.0)
    view = EndpointPropagation((0.1, 0.1), clock=clock)
    assert view.view(["a", "b"]) == []  # the first set, too, needs its propagation delay
    clock.advance(0.1)
    assert view.view(["a", "b"]) == ["a", "b"]
    assert view.view(["a"]) == ["a", "b"]  # b deleted: clients still route to it ...
    clock.advance(0.05)
    assert view.view(["a", "c"]) == ["a", "b"]
    clock.advance(0.05)
    assert view.view(["a", "c"]) == ["a"]  # ... until the change has propagated, then the next
    assert view.next_change_at == pytest.approx(0.25)
    clock.advance(0.05)
    assert view.view(["c", "a"]) == ["a", "c"]  # a reordering is no change
    assert view.next_change_at is None


def test_jittered_delays_stay_in_range_and_zero_delay_is_immediate() -> None:
    clock = FakeClock(0.0)
    view = EndpointPropagation((0.05, 0.3), seed=1, clock=clock)
    for i in range(50):
        view.view([f"ip-{i}"])
        at = view.next_change_at
        assert at is not None and 0.05 <= at - clock.now <= 0.3
        clock.advance(0.3)
        assert view.view([f"ip-{i}"]) == [f"ip-{i}"]
    instant = EndpointPropagation((0, 0), clock=clock)
    assert instant.view(["x"]) == ["x"]
    with pytest.raises(ValueError):
        EndpointPropagation((0.3, 0.1))


# --- the traffic generator counts connection failures apart from statuses -------------------


def test_requests_in_flight_when_a_pod_exits_are_reset_and_taken_out_of_the_statuses() -> None:
    clock = FakeClock()
    faults = FaultProfiles(FaultProfile(latency=Latency(1.0, 1.0)))  # every answer takes 1 s
    pods = {
        ip: SimulatedZaiProxy.from_pod(
            make_pod(name, env=ROOMY), "zai-proxy", faults=faults, rng=random.Random(1), clock=clock
        )
        for ip, name in (("10.0.0.1", "a"), ("10.0.0.2", "b"))
    }
    gen = TrafficGenerator(lambda: list(pods), pods.get, seed=2, clock=clock)
    gen.send(100)
    on_a = gen.stats.by_pod["default/a"]
    assert 0 < on_a < 100
    clock.advance(0.5)
    assert gen.pod_exited(pods["10.0.0.1"]) == on_a  # all still in flight
    stats = gen.stats
    assert (stats.reset, stats.refused, stats.dropped) == (on_a, 0, on_a)
    assert stats.by_status == {200: 100 - on_a} and "default/a" not in stats.by_pod
    assert stats.dropped_by_pod == {"default/a": on_a}
    assert stats.dropped_by_deployment == {"zai-proxy": on_a}
    assert stats.failures == on_a
    clock.advance(1.0)  # b's answers have completed: its exit cuts nothing
    assert gen.pod_exited(pods["10.0.0.2"]) == 0


def test_refused_requests_name_the_pod_that_listened_there() -> None:
    class Gone:
        namespace, name, deployment = "devpod", "zai-proxy-abc-12345", "zai-proxy"

    gen = TrafficGenerator(
        lambda: ["10.0.0.7", "10.0.0.8"],
        lambda ip: None,
        identify=lambda ip: Gone() if ip == "10.0.0.7" else None,
        seed=3,
    )
    gen.send(200)
    by_pod = gen.stats.dropped_by_pod
    assert gen.stats.refused == 200 and gen.stats.reset == 0
    assert set(by_pod) == {"devpod/zai-proxy-abc-12345", "10.0.0.8"}
    assert gen.stats.dropped_by_deployment == {"zai-proxy": by_pod["devpod/zai-proxy-abc-12345"]}


# --- the kubelet: preStop, then SIGTERM ------------------------------------------------------


def with_pre_stop(dep: Obj, pre_stop: Obj, grace: int | None = None) -> Obj:
    spec = dep["spec"]["template"]["spec"]
    spec["containers"][0]["lifecycle"] = {"preStop": pre_stop}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return dep


@pytest.mark.parametrize(
    "pre_stop",
    [
        {"sleep": {"seconds": 1}},
        {"exec": {"command": ["sleep", "1"]}},
        {"exec": {"command": ["/bin/sh", "-c", "sleep 1 && kill -TERM 1"]}},
    ],
    ids=["sleep-action", "exec-sleep", "shell-sleep"],
)
async def test_a_pre_stop_sleep_keeps_the_deleted_pod_serving_until_sigterm(
    api_server: ApiServer, runtime: NullPodRuntime, pre_stop: Obj
) -> None:
    sim = Workload(api_server.registry, runtime, ready_delay=0.01, termination_grace=0.05)
    await sim.start()
    loop = asyncio.get_running_loop()
    try:
        api_server.create(with_pre_stop(deployment("web", replicas=1), pre_stop))
        await wait_until(api_server.store, lambda: len(runtime.running) == 1)
        ((_, name),) = runtime.running
        deleted_at = loop.time()
        api_server.delete("Pod", name)
        await wait_until(
            api_server.store, lambda: ("default", name) not in runtime.running, limit=5
        )
        exited_after = loop.time() - deleted_at
        # the hook's full second (a sleep never ends early), then SIGTERM; generous upper bound
        # for a busy machine
        assert 1.0 <= exited_after < 3.0
        await wait_until(
            api_server.store,
            lambda: name not in {p["metadata"]["name"] for p in api_server.list("Pod")},
        )
    finally:
        await sim.stop()


async def test_without_pre_stop_the_pod_exits_at_once_and_its_object_lingers(
    api_server: ApiServer, runtime: NullPodRuntime
) -> None:
    sim = Workload(api_server.registry, runtime, ready_delay=0.01, termination_grace=2.0)
    await sim.start()
    try:
        api_server.create(deployment("web", replicas=1))
        await wait_until(api_server.store, lambda: len(runtime.running) == 1)
        ((_, name),) = runtime.running
        api_server.delete("Pod", name)
        await wait_until(
            api_server.store, lambda: ("default", name) not in runtime.running, limit=0.5
        )
        (pod,) = [p for p in api_server.list("Pod") if p["metadata"]["name"] == name]
        assert "deletionTimestamp" in pod["metadata"]  # still Terminating, but nothing answers
    finally:
        await sim.stop()


async def test_the_grace_period_cuts_a_longer_pre_stop_hook(
    api_server: ApiServer, runtime: NullPodRuntime
) -> None:
    sim = Workload(api_server.registry, runtime, ready_delay=0.01, termination_grace=0.05)
    await sim.start()
    loop = asyncio.get_running_loop()
    try:
        dep = with_pre_stop(deployment("web"), {"exec": {"command": ["sleep", "infinity"]}})
        api_server.create(dep)
        await wait_until(api_server.store, lambda: len(runtime.running) == 1)
        ((_, name),) = runtime.running
        deleted_at = loop.time()
        api_server.delete("Pod", name, grace_period=1)
        await wait_until(
            api_server.store, lambda: ("default", name) not in runtime.running, limit=5
        )
        assert 1.0 <= loop.time() - deleted_at < 3.0
    finally:
        await sim.stop()


# --- the API server validates lifecycle hooks ------------------------------------------------


@pytest.mark.parametrize(
    ("pre_stop", "grace"),
    [
        ({"sleep": {"seconds": 10}}, None),
        ({"sleep": {"seconds": 0}}, None),
        ({"sleep": {"seconds": 45}}, 45),
        ({"exec": {"command": ["sleep", "10"]}}, None),
        ({"httpGet": {"path": "/drain", "port": 8080}}, None),
        ({"httpGet": {"port": "http"}}, None),
    ],
)
def test_valid_lifecycle_hooks_are_accepted_and_kept(
    api_server: ApiServer, pre_stop: Obj, grace: int | None
) -> None:
    api_server.create(with_pre_stop(deployment("web"), pre_stop, grace))
    spec = api_server.get("Deployment", "web")["spec"]["template"]["spec"]
    assert spec["containers"][0]["lifecycle"] == {"preStop": pre_stop}


PRE_STOP = "spec.template.spec.containers[0].lifecycle.preStop"


@pytest.mark.parametrize(
    ("pre_stop", "grace", "field", "message"),
    [
        ({}, None, PRE_STOP, "Required value: must specify a handler type"),
        (
            {"exec": {"command": ["sleep", "1"]}, "sleep": {"seconds": 1}},
            None,
            f"{PRE_STOP}.sleep",
            "Forbidden: may not specify more than 1 handler type",
        ),
        ({"exec": {"command": []}}, None, f"{PRE_STOP}.exec.command", "Required value"),
        (
            {"sleep": {"seconds": 31}},
            None,
            f"{PRE_STOP}.sleep",
            "must be non-negative and less than terminationGracePeriodSeconds (30)",
        ),
        (
            {"sleep": {"seconds": 11}},
            10,
            f"{PRE_STOP}.sleep",
            "must be non-negative and less than terminationGracePeriodSeconds (10)",
        ),
        (
            {"sleep": {"seconds": -1}},
            None,
            f"{PRE_STOP}.sleep",
            "must be non-negative",
        ),
        ({"httpGet": {"path": "/"}}, None, f"{PRE_STOP}.httpGet.port", "Required value"),
    ],
)
def test_invalid_lifecycle_hooks_are_rejected_like_the_api_server(
    api_server: ApiServer, pre_stop: Obj, grace: int | None, field: str, message: str
) -> None:
    with pytest.raises(ApiError) as err:
        api_server.create(with_pre_stop(deployment("web"), pre_stop, grace))
    assert err.value.code == 422
    causes = err.value.status["details"]["causes"]
    assert any(c["field"] == field and message in c["message"] for c in causes), causes


# --- under traffic: dropped requests per scale-down -------------------------------------------


async def drops_per_scale_down(
    tmp_path: Path, pre_stop_seconds: int | None
) -> tuple[list[int], TrafficStats]:
    """Scale the stable Deployment 4 -> 3 -> 2 -> 1 under 400 req/s; dropped requests of each."""
    options = SandboxOptions(
        workdir=tmp_path,
        ready_delay=0.05,
        termination_grace=0.05,
        traffic_rate=400,
        prometheus=False,
        control_port=None,
        seed=5,
        tuning=ProxyTuning(retry_backoff=0.001),
    )
    drops: list[int] = []
    async with Sandbox(options) as sandbox:
        await zai_proxy_scenario(
            sandbox,
            stable_replicas=4,
            stable_rate_limit_initial=1000,
            pre_stop_seconds=pre_stop_seconds,
        )
        sandbox.traffic.reset_stats()  # not the requests refused before the first pod was Ready
        runtime = sandbox.runtime
        for replicas in (3, 2, 1):
            before = sandbox.traffic.stats.copy()
            serving = {p.name for p in runtime.pods() if p.deployment == "zai-proxy"}
            sandbox.api.patch("Deployment", "zai-proxy", {"spec": {"replicas": replicas}}, "devpod")
            # done once the deleted pod has exited and every client has stopped routing to it
            await wait_until(
                sandbox.api.store,
                lambda r=replicas: sum(p.deployment == "zai-proxy" for p in runtime.pods()) == r,
                limit=10,
            )
            await sandbox.endpoints_propagated()
            (killed,) = serving - {p.name for p in runtime.pods()}
            stats = sandbox.traffic.stats
            dropped = stats.dropped - before.dropped
            # every dropped request was one that reached the pod being terminated
            assert (
                stats.dropped_by_pod[f"devpod/{killed}"] - before.dropped_by_pod[f"devpod/{killed}"]
                == dropped
            )
            drops.append(dropped)
        stats = sandbox.traffic.stats.copy()
        shown = sandbox.status()["traffic"]  # what `ptc sandbox`'s GET /status reports
        assert (shown["dropped"], shown["refused"], shown["reset"]) == (
            stats.dropped,
            stats.refused,
            stats.reset,
        )
    assert stats.failures == stats.dropped  # no HTTP errors, only connection failures
    print(
        f"preStop {pre_stop_seconds}: dropped requests per scale-down {drops} "
        f"(refused {stats.refused}, reset {stats.reset}, of {stats.total})"
    )
    return drops, stats


async def test_scale_downs_without_pre_stop_drop_requests(tmp_path: Path) -> None:
    drops, stats = await drops_per_scale_down(tmp_path, pre_stop_seconds=None)
    # 100-200 req/s reach each pod; clients learn of its removal 0.05-0.3 s late (refused), and
    # the answers in flight when it exits are cut (reset): about 20-60 per scale-down
    assert sum(drops) > 0
    assert stats.refused > 0 and stats.reset > 0


async def test_a_pre_stop_sleep_longer_than_propagation_drops_nothing(tmp_path: Path) -> None:
    drops, stats = await drops_per_scale_down(tmp_path, pre_stop_seconds=1)
    assert drops == [0, 0, 0] and stats.total > 500
