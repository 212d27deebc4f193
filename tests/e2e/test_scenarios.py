"""Scenarios on the seed's world: sandbox + real Prometheus + controller + invariant monitor."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.harness import (
    CANARY,
    RATE_LIMITED,
    STABLE,
    rollout_spec,
    running_controller,
    sandbox_world,
)

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]


async def test_happy_path_flips_to_v2_and_keeps_v1_for_retention(tmp_path: Path) -> None:
    async with (
        sandbox_world(tmp_path) as world,
        running_controller(world, rollout_spec(retention={"scaleDownDelay": "4s"})) as ctl,
    ):
        state = await world.wait_phase("scaling-down", timeout=120)
        assert world.service()["spec"]["selector"] == {"app": "zai-proxy", "version": "v2"}
        await world.wait_for(lambda s: world.replicas(STABLE)[0] == 0, 20, "stable scaled to 0")
        assert world.replicas(CANARY) == (4, 4)
        assert state["writer"] == "test-controller"
        state = await world.wait_phase("completed", timeout=30)
        # Retention: v1 still exists at 0 replicas (deleteStable is false).
        assert world.replicas(STABLE) == (0, 0)
        decisions = [h["decision"] for h in state["history"]]
        assert decisions.count("step-reached") == 3
        assert "flipped" in decisions and decisions[-1] == "completed"
        # Every step was judged by a passing analysis before it advanced.
        advances = [h for h in state["history"] if h["decision"] in ("advance", "flip")]
        assert advances and all(any(m["verdict"] == "pass" for m in h["metrics"]) for h in advances)
        # The Event follows the state write that records the completion.
        wanted = {"RolloutStarted", "StepReached", "SelectorFlipped", "RolloutCompleted"}
        await world.wait_for(
            lambda s: wanted <= {e.get("reason") for e in world.events()}, 10, "the Events"
        )
        # The HTTP API shows the same.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{ctl.server.url}/api/v1/rollouts/zai-proxy") as r:
                status = await r.json()
            async with http.get(f"{ctl.server.url}/metrics") as r:
                metrics = await r.text()
            async with http.get(f"{ctl.server.url}/readyz") as r:
                assert r.status == 200
                ready = await r.json()
        assert status["phase"] == "completed" and status["weight"]["actual"] == 100.0
        # One rollout on an idle loop: lag is measured, and nothing says to shard.
        assert ready["lag"]["maxReconcileRollout"] == "devpod/zai-proxy"
        assert ready["lag"]["maxEvaluationSeconds"] is not None and not ready["lag"]["behind"]
        assert "ptc_reconcile_lag_seconds_count" in metrics
        assert "ptc_evaluation_lag_seconds_count" in metrics
        assert (
            'ptc_rollout_phase{namespace="devpod",phase="completed",rollout="zai-proxy"} 1.0'
            in metrics
        )
        assert world.monitor.checks > 50 and not world.monitor.violations


async def test_delete_stable_after_retention(tmp_path: Path) -> None:
    spec = rollout_spec(
        steps=[{"weight": 50, "hold": "2s"}],
        retention={"scaleDownDelay": "1s", "deleteStable": True},
    )
    async with sandbox_world(tmp_path) as world, running_controller(world, spec):
        uid = next(
            d["metadata"]["uid"]
            for d in world.sandbox.api.list("deployments", "devpod")
            if d["metadata"]["name"] == STABLE
        )
        state = await world.wait_phase("completed", timeout=120)
        # Recorded when retention started; the one deleted by it.
        deleted = [r for r in state["history"] if r["decision"] == "delete-stable"]
        assert len(deleted) == 1 and f"(uid {uid})" in deleted[0]["reason"]
        assert not [
            d
            for d in world.sandbox.api.list("deployments", "devpod")
            if d["metadata"]["name"] == STABLE
        ]


async def test_502s_on_v2_roll_back_with_the_reason(tmp_path: Path) -> None:
    async with sandbox_world(tmp_path) as world, running_controller(world, rollout_spec()):
        await world.wait_for(
            lambda s: s is not None and s["step"] == 1 and s.get("hold") is not None,
            120,
            "step 2 reached",
        )
        world.sandbox.faults.update("devpod", CANARY, error_502=0.5)
        state = await world.wait_phase("rolled-back", timeout=60)
        assert world.service()["spec"]["selector"] == {"app": "zai-proxy"}
        assert world.replicas(STABLE) == (4, 4)
        assert world.replicas(CANARY)[0] == 0
        rollback = next(h for h in state["history"] if h["decision"] == "rollback")
        assert "bad-gateway-ratio" in rollback["reason"] and "<= 0.05" in rollback["reason"]
        failing = [m for m in rollback["metrics"] if m["verdict"] == "fail"]
        assert failing and failing[0]["value"] > 0.05
        events = [e for e in world.events() if e.get("reason") == "RollbackStarted"]
        assert events and "bad-gateway-ratio" in (events[0].get("message") or events[0].get("note"))


async def test_fleet_wide_429s_hold_instead_of_rolling_back(tmp_path: Path) -> None:
    spec = rollout_spec(
        analysis={
            **rollout_spec()["analysis"],
            "metrics": [RATE_LIMITED],
            "maxHold": "120s",
        }
    )
    async with sandbox_world(tmp_path) as world, running_controller(world, spec) as ctl:
        await world.wait_for(
            lambda s: s is not None and s.get("hold") is not None, 120, "step 1 reached"
        )
        # 80 % of upstream attempts refused: 0.8^4 = 41 % of requests end 429 after retries.
        for deployment in (STABLE, CANARY):
            world.sandbox.faults.update("devpod", deployment, upstream_429=0.8)
        await world.wait_for(
            lambda s: "stable breaches too" in (ctl.rollouts()[0]["waiting"] or ""),
            60,
            "a hold because stable breaches too",
        )
        await asyncio.sleep(6)  # several `for:` periods: still no rollback
        state = world.state()
        assert state is not None and state["phase"] == "holding"
        for deployment in (STABLE, CANARY):
            world.sandbox.faults.clear("devpod", deployment)
        state = await world.wait_for(
            lambda s: s is not None and s["step"] >= 1, 60, "the incident passes and step 2 starts"
        )
        assert all(h["decision"] != "rollback" for h in state["history"])


async def test_cold_canary_holds_on_the_capacity_gate_then_proceeds(tmp_path: Path) -> None:
    gate = {
        "capacity": {"gauge": {"metric": "zai_proxy_rate_limit_requests_per_second"}},
        "demand": {"rate": {"metric": "zai_proxy_requests_total"}},
        "headroom": 1.0,
    }
    spec = rollout_spec(analysis={**rollout_spec()["analysis"], "capacityGate": gate})
    # v2's limiter starts at 2 req/s and adapts every 15 s: it cannot take 50% of 40 req/s
    # until its first adjustment.
    async with (
        sandbox_world(
            tmp_path,
            canary_rate_limit_initial=2,
            traffic_rate=40,
            canary_env={"SANDBOX_RATE_LIMIT_WINDOW": "15"},
        ) as world,
        running_controller(world, spec),
    ):
        state = await world.wait_for(
            lambda s: s is not None and s["phase"] == "holding" and "capacity" in s["message"],
            120,
            "a capacity hold",
        )
        held_at = state["step"]
        # The canary's limiter climbs while it serves its share; the gate then opens.
        state = await world.wait_for(
            lambda s: s is not None and s["step"] > held_at, 120, "the gate to open"
        )
        assert any(h["decision"] == "hold-released" for h in state["history"])


async def test_prometheus_down_holds_and_recovers_within_maxhold(tmp_path: Path) -> None:
    spec = rollout_spec(analysis={**rollout_spec()["analysis"], "maxHold": "40s"})
    async with sandbox_world(tmp_path) as world, running_controller(world, spec):
        await world.wait_for(
            lambda s: s is not None and s.get("hold") is not None, 120, "step 1 reached"
        )
        prometheus = world.sandbox.prometheus
        assert prometheus is not None
        await prometheus.stop()
        state = await world.wait_phase("holding", timeout=30)
        assert state["step"] == 0  # never promoted on missing data
        await prometheus.start()  # same port and data directory
        state = await world.wait_for(lambda s: s is not None and s["step"] >= 1, 60, "recovery")
        assert all(h["decision"] != "rollback" for h in state["history"])


async def test_prometheus_gone_past_maxhold_pauses(tmp_path: Path) -> None:
    spec = rollout_spec(analysis={**rollout_spec()["analysis"], "maxHold": "5s"})
    async with sandbox_world(tmp_path) as world, running_controller(world, spec):
        await world.wait_for(
            lambda s: s is not None and s.get("hold") is not None, 120, "step 1 reached"
        )
        assert world.sandbox.prometheus is not None
        await world.sandbox.prometheus.stop()
        state = await world.wait_phase("paused", timeout=40)
        assert "maxHold" in state["message"] and state["step"] == 0
        await world.wait_for(
            lambda s: any(e.get("reason") == "RolloutPaused" for e in world.events()),
            10,
            "the RolloutPaused Event",
        )
