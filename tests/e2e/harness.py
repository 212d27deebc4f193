"""A scenario harness: the sandbox with real Prometheus, the controller, an invariant monitor.

Also what the benchmarks share with the tests (bench/common.py imports it): the sandbox's fast
options, and `ptc run` as a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from kr8s._api import Api as _KrApi

from controller.core.config.model import Config
from controller.sandbox.invariants import InvariantMonitor
from controller.sandbox.rollouts import bad_gateway_ratio, rate_limited_ratio, zai_proxy_rollout
from controller.sandbox.scenarios import zai_proxy_scenario
from controller.sandbox.world import Sandbox, SandboxOptions
from controller.sandbox.zaiproxy import ProxyTuning
from controller.shell.daemon import Controller
from controller.shell.options import DaemonOptions

NS, SERVICE, STABLE, CANARY = "devpod", "zai-proxy", "zai-proxy", "zai-proxy-v2"
FAST = ProxyTuning(retry_backoff=0.001, adjustment_window=1.0)
REPO = Path(__file__).resolve().parents[2]

BAD_GATEWAY = bad_gateway_ratio()
RATE_LIMITED = rate_limited_ratio()


def rollout_spec(**overrides: Any) -> dict[str, Any]:
    """The seed's rollout with durations shortened for tests."""
    spec = zai_proxy_rollout(
        steps=[{"weight": w, "hold": "3s"} for w in (25, 50, 75)],
        flip={"bake": "3s"},
        retention={"scaleDownDelay": "2s"},
        analysis={
            "interval": "1s",
            "window": "5s",
            "minRequests": 5,
            "maxHold": "60s",
            "metrics": [BAD_GATEWAY],
        },
        rollback={"cooldown": "1s"},
    )
    spec.update(overrides)
    return spec


def no_analysis(**overrides: Any) -> dict[str, Any]:
    """A rollout judged by time only (no Prometheus needed)."""
    spec = rollout_spec(**overrides)
    spec["analysis"] = {"interval": "1s", "metrics": []}
    return spec


def fast_options(workdir: Path, **overrides: Any) -> SandboxOptions:
    """Sandbox options for tests and benchmarks: pods Ready in 0.3 s, scrapes every second."""
    base: dict[str, Any] = {
        "ready_delay": 0.3,
        "termination_grace": 0.3,
        "scrape_interval": 1.0,
        "tuning": FAST,
    }
    return SandboxOptions(workdir=workdir, **{**base, **overrides})


@dataclass
class World:
    """What a scenario test gets."""

    sandbox: Sandbox
    monitor: InvariantMonitor

    def service(self) -> dict[str, Any]:
        return self.sandbox.api.get("services", SERVICE, NS)

    def annotation(self) -> dict[str, Any] | None:
        """The state annotation as written (its history: the last few decisions only)."""
        raw = (self.service()["metadata"].get("annotations") or {}).get("ptc.dev/state")
        return json.loads(raw) if raw else None

    def state(self) -> dict[str, Any] | None:
        """The state with its full decision history (the history ConfigMap's, then the rest)."""
        state = self.annotation()
        if state is None:
            return None
        try:
            cm = self.sandbox.api.get("configmaps", f"ptc-history-{SERVICE}", NS)
        except Exception:
            return state
        data = cm.get("data") or {}
        if data.get("target") != state.get("target"):
            return state
        seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in [*json.loads(data.get("history", "[]")), *state.get("history", [])]:
            seen.setdefault((r["at"], r["step"], r["decision"], r.get("by")), r)

        def at(r: dict[str, Any]) -> datetime:
            return datetime.fromisoformat(str(r["at"]).replace("Z", "+00:00"))

        return {**state, "history": sorted(seen.values(), key=at)}

    def replicas(self, deployment: str) -> tuple[int, int]:
        dep = self.sandbox.api.get("deployments", deployment, NS)
        return dep["spec"]["replicas"], (dep.get("status") or {}).get("readyReplicas", 0)

    def events(self) -> list[dict[str, Any]]:
        return [
            e
            for kind in ("events", "events.k8s.io/v1/Event")
            for e in self._list(kind)
            if (e.get("involvedObject") or e.get("regarding") or {}).get("name") == SERVICE
        ]

    def controller_events(self) -> list[dict[str, Any]]:
        """Events about the controller itself (on its leader-election Lease)."""
        return [
            e
            for e in self._list("events")
            if (e.get("involvedObject") or {}).get("kind") == "Lease"
        ]

    def _list(self, kind: str) -> list[dict[str, Any]]:
        try:
            return self.sandbox.api.list(kind, NS)
        except Exception:
            return []

    async def wait_for(
        self, predicate: Callable[[dict[str, Any] | None], bool], timeout: float, what: str
    ) -> dict[str, Any] | None:
        """Wait until predicate(state) holds; fail on an invariant violation or the timeout."""
        watch = self.sandbox.api.store.watch(None, NS, cuttable=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                state = self.state()
                if self.monitor.violations:
                    raise AssertionError(f"invariant violated: {self.monitor.violations[0]}")
                if predicate(state):
                    return state
                left = deadline - loop.time()
                if left <= 0:
                    phase = state and (state.get("phase"), state.get("step"), state.get("message"))
                    raise AssertionError(f"timed out waiting for {what}; last state: {phase}")
                await watch.next(min(left, 0.2))
        finally:
            watch.close()

    async def wait_phase(self, *phases: str, timeout: float = 90.0) -> dict[str, Any]:
        state = await self.wait_for(
            lambda s: s is not None and s.get("phase") in phases, timeout, f"phase {phases}"
        )
        assert state is not None
        return state


@asynccontextmanager
async def sandbox_world(
    tmp_path: Path,
    *,
    stable_replicas: int = 4,
    canary_rate_limit_initial: float = 500,
    stable_rate_limit_initial: float = 500,
    traffic_rate: float = 60,
    prometheus: bool = True,
    floor: int = 4,
    canary_env: dict[str, str] | None = None,
    pre_stop_seconds: int | None = None,
    quiet_canary: bool = False,
    seed: int = 11,
    traffic_connections: int = 0,
) -> AsyncIterator[World]:
    """The zai-proxy scenario with Prometheus and the invariant monitor running."""
    _KrApi._instances.clear()
    options = fast_options(
        tmp_path / "sandbox",
        traffic_rate=traffic_rate,
        traffic_connections=traffic_connections,
        prometheus=prometheus,
        seed=seed,
    )
    async with Sandbox(options) as sandbox:
        await zai_proxy_scenario(
            sandbox,
            stable_replicas=stable_replicas,
            canary_rate_limit_initial=canary_rate_limit_initial,
            stable_rate_limit_initial=stable_rate_limit_initial,
            canary_env=canary_env,
            pre_stop_seconds=pre_stop_seconds,
            quiet_canary=quiet_canary,
        )
        monitor = InvariantMonitor(sandbox, NS, SERVICE, STABLE, CANARY, floor)
        monitor.start()
        try:
            yield World(sandbox, monitor)
        finally:
            await monitor.stop()
    _KrApi._instances.clear()


def config_document(world: World, *specs: dict[str, Any]) -> dict[str, Any]:
    """A config file's content for the world (Prometheus URL filled in when there is one)."""
    sandbox = world.sandbox
    prometheus = {"url": sandbox.prometheus.url, "timeout": "2s"} if sandbox.prometheus else {}
    return {"prometheus": prometheus, "rollouts": list(specs)}


@asynccontextmanager
async def running_controller(
    world: World,
    spec: dict[str, Any],
    *,
    config_file: Path | None = None,
    identity: str = "test-controller",
    **options: Any,
) -> AsyncIterator[Controller]:
    """The controller in-process against the world, stopped cleanly afterwards.

    With `config_file`, the config is written there and watched for hot reloads; `options` are
    more DaemonOptions (e.g. alerts_token_file).
    """
    sandbox = world.sandbox
    assert sandbox.kubeconfig is not None
    document = config_document(world, spec)
    if config_file is not None:
        config_file.write_text(json.dumps(document))
    config = Config.model_validate(document)
    controller = Controller(
        config,
        DaemonOptions(
            kubeconfig=str(sandbox.kubeconfig),
            listen_host="127.0.0.1",
            listen_port=0,
            identity=identity,
            config_source=str(config_file) if config_file else "",
            **options,
        ),
    )
    task = asyncio.create_task(controller.run(), name="controller")
    try:
        yield controller
    finally:
        controller.stop()
        await asyncio.wait_for(task, timeout=30)


# -- `ptc run` as a real process -----------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ControllerProcess:
    """`python -m controller.ops.cli run` as a subprocess; `url` serves /readyz and /metrics."""

    proc: asyncio.subprocess.Process
    url: str  # "" when it listens on a port chosen by the OS
    started: float  # time.monotonic() just before the spawn
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_ready(self, timeout: float, poll: float = 0.01) -> float:
        """Seconds from spawn to the first /readyz 200."""
        assert self.url, "started with port=0: no URL to ask"
        deadline = self.started + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"controller exited {self.proc.returncode}: {self.tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return time.monotonic() - self.started
                await asyncio.sleep(poll)
        raise TimeoutError(f"/readyz not 200 after {timeout}s: {self.tail()}")

    def tail(self, limit: int = 1500) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-limit:]
        return ""


@asynccontextmanager
async def controller_process(
    config: Path,
    kubeconfig: Path,
    log: Path,
    *,
    identity: str,
    args: tuple[str, ...] = (),
    port: int | None = None,
    stop_grace: float | None = 20.0,
    module: str = "controller.ops.cli",
) -> AsyncIterator[ControllerProcess]:
    """Start `ptc run` (JSON logs appended to `log`); stopped when the block ends.

    `port` None picks a free one (the URL is known); 0 lets the OS choose (no URL, no race
    between processes started together). At the end a process still running gets SIGTERM and
    `stop_grace` seconds, then SIGKILL; `stop_grace` None: SIGKILL at once. `module` is the
    CLI module run with ``python -m`` (the fencing tests' negative control passes its own).
    """
    port = free_port() if port is None else port
    with log.open("ab") as out:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "run",
            "--config",
            str(config),
            "--kubeconfig",
            str(kubeconfig),
            "--listen",
            f"127.0.0.1:{port}",
            "--identity",
            identity,
            "--log-format",
            "json",
            *args,
            stdout=out,
            stderr=out,
            cwd=str(REPO),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}" if port else ""
    try:
        yield ControllerProcess(proc, url, started, log)
    finally:
        await stop_process(proc, stop_grace)


async def stop_process(proc: asyncio.subprocess.Process, grace: float | None = 20.0) -> None:
    """SIGTERM, wait `grace` seconds, then SIGKILL (None: SIGKILL at once); this process only."""
    if proc.returncode is not None:
        return
    if grace is not None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=grace)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
