"""Three sharded controller processes: each drives its shards; a killed one's rollouts go on.

Six rollouts (one per namespace) chosen so that each falls on a different one of six shards;
three `ptc run --shards 6` processes share them, two shards each. One is killed with SIGKILL
while every rollout holds its first step; the survivors take its shards within the lease
duration, and every rollout completes with each step reached exactly once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kr8s._api import Api as _KrApi

from controller.core.sharding import shard_of
from controller.sandbox.invariants import InvariantMonitor
from controller.sandbox.scenarios import zai_proxy_scenario
from controller.sandbox.world import Sandbox, SandboxOptions
from tests.e2e.harness import FAST, controller_process, no_analysis, state_view

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHARDS = 6
REPLICAS = ("ctl-a", "ctl-b", "ctl-c")
LEASE_NS = "ptc"
# Short leases so a successor takes over in seconds (the defaults are 15s/10s/2s).
LEASE = ("--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "0.3s")


def one_namespace_per_shard() -> list[str]:
    """Namespaces whose rollout (named after it) lands on shards 0..5, one each."""
    chosen: dict[int, str] = {}
    for k in range(1000):
        ns = f"team-{k}"
        chosen.setdefault(shard_of(ns, name(ns), SHARDS), ns)
        if len(chosen) == SHARDS:
            return [chosen[i] for i in range(SHARDS)]
    raise AssertionError("no namespace for some shard")


def name(namespace: str) -> str:
    return f"web-{namespace}"  # rollout names are unique across namespaces


def spec(namespace: str) -> dict[str, Any]:
    return no_analysis(
        name=name(namespace),
        namespace=namespace,
        replicas=3,
        steps=[{"weight": 34, "hold": "20s"}, {"weight": 67, "hold": "2s"}],
        flip={"bake": "1s"},
    )


def state(sandbox: Sandbox, ns: str) -> dict[str, Any] | None:
    """The rollout's state with its full history (the ConfigMap's records, then the rest)."""
    svc = sandbox.api.get("services", "zai-proxy", ns)
    raw = (svc["metadata"].get("annotations") or {}).get("ptc.dev/state")
    if not raw:
        return None
    current = state_view(raw)
    records = list(current.get("history", []))
    try:
        cm = sandbox.api.get("configmaps", "ptc-history-zai-proxy", ns)
        if (cm.get("data") or {}).get("target") == current.get("revision"):
            records = [*json.loads(cm["data"].get("history", "[]")), *records]
    except Exception:
        pass
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        seen.setdefault((r["at"], r["step"], r["decision"], r.get("by")), r)
    return {**current, "history": sorted(seen.values(), key=lambda r: str(r["at"]))}


LAST: list[Any] = []  # what the last sample saw, for a timeout's message


def holders(sandbox: Sandbox) -> list[str | None]:
    out: list[str | None] = []
    for i in range(SHARDS):
        try:
            lease = sandbox.api.get("leases", f"ptc-leader-shard-{i}", LEASE_NS)
            out.append((lease.get("spec") or {}).get("holderIdentity"))
        except Exception:
            out.append(None)
    return out


async def poll(
    check: Any, timeout: float, what: str, procs: list[asyncio.subprocess.Process]
) -> Any:
    """Poll ``check()`` (truthy ends it) every 0.1 s until the deadline; fail with ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if any(p.returncode is not None for p in procs):
            raise AssertionError(f"a controller exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen: {LAST}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def controller(
    sandbox: Sandbox, config: Path, log: Path, identity: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """One sharded `ptc run` through the shared harness (SIGKILLed at the end, if still running)."""
    assert sandbox.kubeconfig is not None
    args = (*LEASE, "--shards", str(SHARDS), "--leader-namespace", LEASE_NS)
    async with controller_process(
        config, sandbox.kubeconfig, log, identity=identity, args=args, port=0, stop_grace=None
    ) as ctl:
        yield ctl.proc


async def test_a_killed_replicas_shards_go_on_under_the_others(tmp_path: Path) -> None:
    namespaces = one_namespace_per_shard()
    _KrApi._instances.clear()
    options = SandboxOptions(
        workdir=tmp_path / "sandbox",
        ready_delay=0.3,
        termination_grace=0.3,
        traffic_rate=5,
        prometheus=False,
        seed=7,
        tuning=FAST,
    )
    async with Sandbox(options) as sandbox, AsyncExitStack() as stack:
        monitors = []
        for ns in namespaces:
            await zai_proxy_scenario(sandbox, stable_replicas=3, namespace=ns)
            monitor = InvariantMonitor(sandbox, ns, "zai-proxy", "zai-proxy", "zai-proxy-v2", 3)
            monitor.start()
            monitors.append(monitor)
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps({"rollouts": [spec(ns) for ns in namespaces]}))
        log = tmp_path / "controllers.log"
        procs = {
            name: await stack.enter_async_context(controller(sandbox, config, log, name))
            for name in REPLICAS
        }

        def alive() -> list[asyncio.subprocess.Process]:
            return [p for n, p in procs.items() if n != victim]

        victim = ""
        # writers seen per namespace, sampled while the rollouts run
        writers: dict[str, set[str]] = {ns: set() for ns in namespaces}

        def sample() -> list[dict[str, Any] | None]:
            states = [state(sandbox, ns) for ns in namespaces]
            LAST[:] = [
                s and (s["phase"], s["step"], s.get("writer"), s.get("message")) for s in states
            ]
            for ns, s in zip(namespaces, states, strict=True):
                if s is not None and s.get("writer"):
                    writers[ns].add(s["writer"])
            for m in monitors:
                if m.violations:
                    raise AssertionError(f"invariant violated: {m.violations[0]}")
            return states

        # Spread: each replica leads two shards.
        def spread() -> list[str | None] | None:
            h = holders(sandbox)
            counts = {r: h.count(r) for r in REPLICAS}
            return h if sorted(counts.values()) == [2, 2, 2] else None

        led = await poll(spread, 90, "two shards led by each replica", alive())

        def all_holding_step_0() -> bool:
            # each rollout holds its first step; the shards have not moved since
            return holders(sandbox) == led and all(
                s is not None and s["step"] == 0 and s.get("hold") for s in sample()
            )

        await poll(all_holding_step_0, 120, "every rollout at its first step", alive())
        victim = led[0]
        victims = [ns for i, ns in enumerate(namespaces) if led[i] == victim]
        at_kill = {ns: s and s["writer"] for ns, s in zip(namespaces, sample(), strict=True)}
        for ns in namespaces:
            writers[ns].clear()  # from here: who writes after the kill
        killed_at = time.monotonic()
        procs[victim].send_signal(signal.SIGKILL)
        await procs[victim].wait()

        def taken_over() -> bool:
            sample()
            now = holders(sandbox)
            return all(now[i] in REPLICAS and now[i] != victim for i in range(SHARDS))

        # Its shards' Leases expire (3 s) and the survivors take them.
        await poll(taken_over, 30, "the survivors to lead the victim's shards", alive())
        took_over = time.monotonic() - killed_at

        def all_completed() -> bool:
            return all(s is not None and s["phase"] == "completed" for s in sample())

        await poll(all_completed, 180, "every rollout completed", alive())
        elected = [
            (e["involvedObject"]["name"], e["message"])
            for e in sandbox.api.list("events", LEASE_NS)
            if e.get("reason") == "LeaderElected"
        ]
        after = holders(sandbox)
        finals = {ns: state(sandbox, ns) for ns in namespaces}
        for m in monitors:
            await m.stop()
    _KrApi._instances.clear()
    assert victim not in after and all(h in REPLICAS for h in after), after
    for i in range(SHARDS):  # one Event per leadership change, on the shard's Lease
        lease = f"ptc-leader-shard-{i}"
        assert (lease, f"{after[i]} leads shard {i} (1 rollouts) now") in elected, elected
    for ns in namespaces:
        final = finals[ns]
        assert final is not None
        reached: dict[int, int] = {}
        for h in final["history"]:
            if h["decision"] == "step-reached":
                reached[h["step"]] = reached.get(h["step"], 0) + 1
        assert reached == {0: 1, 1: 1}, (ns, reached)  # none repeated, none skipped
    for i, ns in enumerate(namespaces):
        new = writers[ns] - {at_kill[ns]}  # who wrote the state after the kill
        if ns in victims:  # taken over by a survivor (maybe the one that drove it before)
            assert victim not in new and finals[ns]["writer"] != victim, (ns, writers[ns])
        else:  # the survivors kept their own shards
            assert new <= {led[i]}, (ns, writers[ns], led)
    # lease 3 s, then the survivor's next attempt (0.3 s) and a moment to act; loaded machine
    assert took_over < 3 + 3, took_over


async def test_one_sharded_replica_leads_every_shard_and_reports_them(tmp_path: Path) -> None:
    """In-process: the daemon's wiring (start on gain, fenced views, API, metrics, reload)."""
    import aiohttp

    from tests.e2e.harness import running_controller, sandbox_world

    spec = no_analysis(steps=[{"weight": 50, "hold": "1s"}], flip={"bake": "1s"})
    async with (
        sandbox_world(tmp_path, prometheus=False) as world,
        running_controller(
            world,
            spec,
            config_file=tmp_path / "config.yaml",
            identity="solo",
            shards=3,
            leader_namespace=LEASE_NS,
            lease_duration=timedelta(seconds=3),
            renew_deadline=timedelta(seconds=2),
            retry_period=timedelta(seconds=0.3),
        ) as ctl,
    ):
        state = await world.wait_phase("completed", timeout=90)
        assert state["writer"] == "solo"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{ctl.server.url}/api/v1/rollouts") as r:
                body = await r.json()
            async with http.get(f"{ctl.server.url}/metrics") as r:
                metrics = await r.text()
        shard = shard_of("devpod", "zai-proxy", 3)
        assert [(s["shard"], s["holder"], s["rollouts"]) for s in body["controller"]["shards"]] == [
            (i, "solo", 1 if i == shard else 0) for i in range(3)
        ]
        assert "ptc_shards_led 3.0" in metrics and "ptc_leader 1.0" in metrics
        assert body["rollouts"][0]["writer"] == "solo"
