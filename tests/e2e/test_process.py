"""`ptc run` as a real process: SIGKILL at random moments of each phase, SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness
from tests.e2e.harness import CANARY, STABLE, World, rollout_spec, sandbox_world

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]


def write_config(world: World, path: Path, spec: dict[str, Any]) -> Path:
    assert world.sandbox.prometheus is not None
    config = {
        "prometheus": {"url": world.sandbox.prometheus.url, "timeout": "2s"},
        "rollouts": [spec],
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


# Short leases so a successor takes over in seconds (the defaults are 15s/10s/2s).
FAST_LEASE = ("--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "0.3s")


@asynccontextmanager
async def controller_process(
    world: World,
    config: Path,
    log: Path,
    identity: str,
    kubeconfig: Path | None = None,
    *,
    module: str = "controller.ops.cli",
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m controller.ops.cli run` (or `module`) against the world; killed at the end."""
    assert world.sandbox.kubeconfig is not None
    async with harness.controller_process(
        config,
        kubeconfig or world.sandbox.kubeconfig,
        log,
        identity=identity,
        args=FAST_LEASE,
        port=0,
        stop_grace=None,
        module=module,
    ) as started:
        yield started.proc


async def test_sigkill_in_every_phase_then_restart_completes(tmp_path: Path) -> None:
    rng = random.Random(20261127)
    spec = rollout_spec()
    async with sandbox_world(tmp_path) as world:
        config = write_config(world, tmp_path / "config.yaml", spec)
        log = tmp_path / "controller.shell.log"
        kills: list[tuple[str, int, float]] = []
        # Each target: the state to wait for, then a random delay before SIGKILL.
        targets = [
            ("progressing", 0),
            ("progressing", 1),
            ("progressing", 2),
            ("flipping", 3),
            ("baking", 3),
            ("scaling-down", 3),
        ]
        for run, (phase, step) in enumerate(targets, start=1):
            async with controller_process(world, config, log, f"ctl-{run}") as proc:
                await world.wait_for(
                    lambda s, p=phase, i=step: s is not None and s["phase"] == p and s["step"] == i,
                    120,
                    f"{phase} step {step}",
                )
                delay = rng.uniform(0.0, 1.5)
                await asyncio.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                kills.append((phase, step, round(delay, 2)))
        async with controller_process(world, config, log, "ctl-final"):
            state = await world.wait_phase("completed", timeout=120)
        assert world.service()["spec"]["selector"] == {"app": "zai-proxy", "version": "v2"}
        assert world.replicas(CANARY) == (4, 4)
        assert world.replicas(STABLE)[0] == 0
        history = state["history"]
        reached = Counter(h["step"] for h in history if h["decision"] == "step-reached")
        # No step skipped, none reached twice, in order.
        assert reached == {0: 1, 1: 1, 2: 1}, (reached, kills)
        order = [h["step"] for h in history if h["decision"] == "step-reached"]
        assert order == [0, 1, 2]
        # Every advance was judged by analysis after its step was reached (none skipped).
        for record in history:
            if record["decision"] in ("advance", "flip"):
                assert any(m["verdict"] == "pass" for m in record["metrics"]), record
        assert [h["decision"] for h in history].count("flipped") == 1
        assert not world.monitor.violations, world.monitor.violations
        writers = {state["writer"]}
        assert writers == {"ctl-final"}


async def test_sigterm_finishes_and_exits_zero(tmp_path: Path) -> None:
    spec = rollout_spec(steps=[{"weight": 50, "hold": "30s"}])
    async with sandbox_world(tmp_path) as world:
        config = write_config(world, tmp_path / "config.yaml", spec)
        log = tmp_path / "controller.shell.log"
        async with controller_process(world, config, log, "ctl") as proc:
            await world.wait_for(
                lambda s: s is not None and s.get("hold") is not None, 120, "step 1"
            )
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), timeout=30)
        assert code == 0, log.read_text()[-2000:]
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert any(line.get("event") == "controller stopped" for line in lines)
        # The state written before the stop is intact and resumable.
        state = world.state()
        assert state is not None and state["phase"] in ("progressing", "holding")
