"""Two controller processes: one writes; the other takes over when the leader dies or stalls."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.harness import World, rollout_spec, sandbox_world
from tests.e2e.test_process import controller_process, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]

WRITE_VERBS = {"create", "update", "patch", "delete"}
WORKLOAD = {"services", "deployments", "deployments/scale"}


def kubeconfig_for(world: World, tmp_path: Path, user: str) -> Path:
    """A kubeconfig whose token identifies `user` in the sandbox's request accounting."""
    world.sandbox.api.add_token(f"token-{user}", user)
    return world.sandbox.api.write_kubeconfig(
        tmp_path / f"kubeconfig-{user}", token=f"token-{user}"
    )


def workload_writes(world: World) -> Counter[str]:
    """Writes to Services and Deployments (not Leases or Events) per user."""
    counts: Counter[str] = Counter()
    for key, n in world.sandbox.api.request_counts().items():
        if key.verb in WRITE_VERBS and key.resource in WORKLOAD:
            counts[key.user] += n
    return counts


async def test_one_writer_and_takeover_after_sigkill(tmp_path: Path) -> None:
    spec = rollout_spec()
    async with sandbox_world(tmp_path) as world:
        config = write_config(world, tmp_path / "config.yaml", spec)
        a, b = kubeconfig_for(world, tmp_path, "ctl-a"), kubeconfig_for(world, tmp_path, "ctl-b")
        log = tmp_path / "controllers.log"
        async with (
            controller_process(world, config, log, "ctl-a", a) as proc_a,
            controller_process(world, config, log, "ctl-b", b) as proc_b,
        ):
            state = await world.wait_for(
                lambda s: s is not None and s["step"] == 1 and s.get("hold"),
                120,
                "step 2 reached",
            )
            assert state is not None
            writes = workload_writes(world)
            leader = state["writer"]
            standby = "ctl-b" if leader == "ctl-a" else "ctl-a"
            assert writes[leader] > 0 and writes[standby] == 0, writes
            # SIGKILL the leader mid-step: the standby takes over within the lease duration.
            victim = proc_a if leader == "ctl-a" else proc_b
            killed_at = time.monotonic()
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            state = await world.wait_for(
                lambda s: s is not None and s["writer"] == standby, 30, "the standby to write"
            )
            took_over = time.monotonic() - killed_at
            state = await world.wait_phase("completed", timeout=120)
        reached = Counter(h["step"] for h in state["history"] if h["decision"] == "step-reached")
        assert reached == {0: 1, 1: 1, 2: 1}, reached  # none repeated, none skipped
        assert took_over < 3 + 2 + 2, took_over  # lease 3s (+ retry, start-up slack)
        assert not world.monitor.violations


async def test_a_stalled_leader_writes_nothing_after_it_resumes(tmp_path: Path) -> None:
    spec = rollout_spec(steps=[{"weight": 25, "hold": "3s"}, {"weight": 50, "hold": "60s"}])
    async with sandbox_world(tmp_path) as world:
        config = write_config(world, tmp_path / "config.yaml", spec)
        a, b = kubeconfig_for(world, tmp_path, "ctl-a"), kubeconfig_for(world, tmp_path, "ctl-b")
        log = tmp_path / "controllers.log"
        async with (
            controller_process(world, config, log, "ctl-a", a) as proc_a,
            controller_process(world, config, log, "ctl-b", b) as proc_b,
        ):
            state = await world.wait_for(
                lambda s: s is not None and s.get("hold"), 120, "step 1 reached"
            )
            assert state is not None
            leader = state["writer"]
            standby = "ctl-b" if leader == "ctl-a" else "ctl-a"
            paused = proc_a if leader == "ctl-a" else proc_b
            paused.send_signal(signal.SIGSTOP)  # its lease lapses while it is frozen
            try:
                await world.wait_for(
                    lambda s: s is not None and s["writer"] == standby and s["step"] == 1,
                    60,
                    "the standby to take over and move on",
                )
                before = workload_writes(world)[leader]
            finally:
                paused.send_signal(signal.SIGCONT)
            # Once the resumed process has read the Lease twice it has seen it lost it; any
            # write it still had in it would have been sent by then (no fixed wait).
            api = world.sandbox.api
            reads = api.count(verb="get", resource="leases", user=leader)
            await world.wait_for(
                lambda _: api.count(verb="get", resource="leases", user=leader) >= reads + 2,
                30,
                "the resumed leader to read the Lease",
            )
            after = workload_writes(world)[leader]
            assert after == before, f"the old leader wrote {after - before} times after resuming"
            state = world.state()
            assert state is not None and state["writer"] == standby
