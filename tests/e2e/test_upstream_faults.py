"""The zai-proxy metric pack against faults injected at the *upstream*, with real Prometheus.

The simulated proxies apply the real binary's retry policy to what their upstream answers, so
what Prometheus scrapes comes out of the proxy's own logic (research note on the real binary,
section 5). The analysis is config/zai-proxy.yaml's as shipped, with its durations shortened
(evaluated every 1 s over a 5 s window, `for:` 2-3 s). At 60 req/s over four pods the one
canary pod of step 1 serves ~15 req/s.

Policy for an undersized canary (stated in docs/zai-proxy.md): it *rolls back*. Its 503s
("Service at capacity", more than MAX_WORKERS in flight) are errors its users got, counted in
the final 5xx ratio against stable; the capacity gate only holds increases while v2's limiters
are cold, it cannot make a too-small MAX_WORKERS fit.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.sandbox.faults import Latency
from tests.e2e.harness import (
    CANARY,
    NS,
    STABLE,
    World,
    rollout_spec,
    running_controller,
    sandbox_world,
)

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FOR = {"server-error-ratio": "2s", "rate-limited-ratio": "3s", "upstream-429-pressure": "2s"}


def pack_metrics() -> list[dict[str, Any]]:
    """The shipped pack's metrics with `for:` shortened for a 5 s window."""
    config = yaml.safe_load((REPO / "config" / "zai-proxy.yaml").read_text())
    metrics: list[dict[str, Any]] = config["rollouts"][0]["analysis"]["metrics"]
    return [{**m, "for": FOR.get(m["name"], "3s")} for m in metrics]


def pack_spec(**analysis: Any) -> dict[str, Any]:
    return rollout_spec(
        steps=[{"weight": 25, "hold": "30s"}, {"weight": 50, "hold": "3s"}],
        analysis={**rollout_spec()["analysis"], "metrics": pack_metrics(), **analysis},
    )


async def step_reached(world: World) -> None:
    await world.wait_for(
        lambda s: s is not None and s.get("hold") is not None, 120, "step 1 reached"
    )


def rollback_record(state: dict[str, Any]) -> dict[str, Any]:
    return next(h for h in state["history"] if h["decision"] == "rollback")


def verdicts(record: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["verdict"] for m in record["metrics"]}


async def test_canary_only_upstream_502_burst_rolls_back_on_the_5xx_ratio(tmp_path: Path) -> None:
    async with sandbox_world(tmp_path) as world, running_controller(world, pack_spec()):
        await step_reached(world)
        world.sandbox.faults.update(NS, CANARY, error_502=0.3)  # passed through 1:1
        state = await world.wait_phase("rolled-back", timeout=60)
        record = rollback_record(state)
        assert "server-error-ratio" in record["reason"], record["reason"]
        assert verdicts(record)["server-error-ratio"] == "fail"
        assert world.replicas(STABLE) == (4, 4) and world.replicas(CANARY)[0] == 0


async def test_canary_only_upstream_429s_hidden_by_retries_are_caught_by_the_pressure(
    tmp_path: Path,
) -> None:
    """30 % of v2's upstream attempts are 429s; 0.8 % of its clients see one."""
    async with sandbox_world(tmp_path) as world, running_controller(world, pack_spec()):
        await step_reached(world)
        before = world.sandbox.traffic.stats.copy()
        world.sandbox.faults.update(NS, CANARY, upstream_429=0.3)
        state = await world.wait_phase("rolled-back", timeout=60)
        record = rollback_record(state)
        assert "upstream-429-pressure" in record["reason"], record["reason"]
        judged = verdicts(record)
        assert judged["upstream-429-pressure"] == "fail"
        # What requests_total{status_code="429"} says at that moment: nothing to act on.
        assert judged["rate-limited-ratio"] == "pass"
        assert judged["server-error-ratio"] == "pass"
        seen = world.sandbox.traffic.stats.by_deployment[CANARY]
        seen_before = before.by_deployment.get(CANARY, {})
        answered = sum(seen.values()) - sum(seen_before.values())
        limited = seen[429] - seen_before.get(429, 0)
        assert answered > 50 and limited / answered < 0.05  # the users barely saw it


async def test_fleet_wide_upstream_429_storm_holds_then_proceeds(tmp_path: Path) -> None:
    spec = pack_spec(maxHold="120s")
    async with sandbox_world(tmp_path) as world, running_controller(world, spec) as ctl:
        await step_reached(world)
        for deployment in (STABLE, CANARY):
            world.sandbox.faults.update(NS, deployment, upstream_429=0.3)
        await world.wait_for(
            lambda s: "stable breaches too" in (ctl.rollouts()[0]["waiting"] or ""),
            60,
            "a hold because stable breaches too",
        )
        await asyncio.sleep(6)  # several `for:` periods of the storm: still no rollback
        state = world.state()
        assert state is not None and state["phase"] == "holding" and state["step"] == 0
        for deployment in (STABLE, CANARY):
            world.sandbox.faults.clear(NS, deployment)
        state = await world.wait_for(
            lambda s: s is not None and s["step"] >= 1, 90, "the storm passes and step 2 starts"
        )
        assert all(h["decision"] != "rollback" for h in state["history"])


async def test_undersized_canary_answering_503s_rolls_back(tmp_path: Path) -> None:
    """v2 runs MAX_WORKERS=2 against a slower upstream: ~15 req/s x 0.4 s needs ~6 workers."""
    async with (
        sandbox_world(tmp_path, canary_env={"MAX_WORKERS": "2"}) as world,
        running_controller(world, pack_spec()),
    ):
        world.sandbox.faults.update(NS, CANARY, latency=Latency(0.4, 0.5))
        state = await world.wait_phase("rolled-back", timeout=90)
        record = rollback_record(state)
        assert "server-error-ratio" in record["reason"], record["reason"]
        seen = world.sandbox.traffic.stats.by_deployment[CANARY]
        assert seen[503] > 0 and seen[502] == 0  # the errors were the proxy's own 503s
        assert world.replicas(STABLE) == (4, 4) and world.replicas(CANARY)[0] == 0
