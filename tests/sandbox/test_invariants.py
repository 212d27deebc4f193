"""The invariant monitor judges what ptc does: a foreign pod behind the Service is a violation
once traffic moves, not while the Service is still the user's (preflight must refuse it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.core.state import decode_state, encode_state
from controller.sandbox.invariants import InvariantMonitor
from controller.sandbox.scenarios import zai_proxy_scenario
from controller.sandbox.world import Sandbox, SandboxOptions
from tests.sandbox.conftest import wait_until

NS, SERVICE = "devpod", "zai-proxy"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    options = SandboxOptions(
        workdir=tmp_path,
        ready_delay=0.05,
        termination_grace=0.05,
        traffic_rate=0,
        prometheus=False,
        seed=7,
    )
    async with Sandbox(options) as world:
        await zai_proxy_scenario(world)
        yield world


def set_phase(sandbox: Sandbox, phase: str) -> None:
    svc = sandbox.api.get("Service", SERVICE, NS)
    # The state as ptc writes it today (a v1 annotation migrated and encoded again: v2).
    v1 = json.dumps({"v": 1, "phase": phase, "target": "t"})
    svc["metadata"].setdefault("annotations", {})["ptc.dev/state"] = encode_state(decode_state(v1))
    sandbox.api.update(svc)


async def test_a_foreign_pod_violates_only_once_traffic_moves(sandbox: Sandbox) -> None:
    monitor = InvariantMonitor(sandbox, NS, SERVICE, "zai-proxy", "zai-proxy-v2", floor=1)
    monitor.start()
    try:
        set_phase(sandbox, "preflight")
        sandbox.api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "debug-shell",
                    "namespace": NS,
                    "labels": {"app": "zai-proxy"},
                },
                "spec": {"containers": [{"name": "sh", "image": "busybox"}]},
            }
        )
        await wait_until(
            sandbox.api.store,
            lambda: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in sandbox.api.get("Pod", "debug-shell", NS)
                .get("status", {})
                .get("conditions", [])
            ),
            limit=10,
        )
        monitor.check()
        assert monitor.violations == []  # the Service is still the user's
        set_phase(sandbox, "progressing")
        await asyncio.wait_for(monitor.first_violation.wait(), 5)
        assert "foreign pods: ['debug-shell']" in str(monitor.violations[0])
    finally:
        await monitor.stop()
