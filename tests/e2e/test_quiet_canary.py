"""Issue 18: a canary already at 1 Ready pod that has served no request yet.

The real zai-proxy creates `zai_proxy_requests_total` with its first request, so such a pod
exposes only build_info, max_workers and the rate gauge. The sandbox's quiet-canary scenario
reproduces that cluster: v2 runs one Ready pod while the Service is pinned to v1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.harness import CANARY, STABLE, rollout_spec, running_controller, sandbox_world
from tests.e2e.test_operations import ptc

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PINNED_TO_V1 = {"app": "zai-proxy", "version": "v1"}


def pack_preflight() -> dict[str, Any]:
    """The preflight section of config/zai-proxy.yaml, as shipped."""
    config = yaml.safe_load((REPO / "config" / "zai-proxy.yaml").read_text())
    preflight: dict[str, Any] = config["rollouts"][0]["preflight"]
    return preflight


def quiet_spec(**overrides: Any) -> dict[str, Any]:
    spec = rollout_spec(
        stable={"deployment": STABLE, "version": "v1"},
        steps=[{"weight": 25, "hold": "1s"}],
        flip={"bake": "1s"},
        retention={"scaleDownDelay": "1s"},
        **overrides,
    )
    spec["analysis"] = {"interval": "1s", "metrics": []}
    spec["preflight"] = pack_preflight()
    return spec


async def test_a_canary_that_has_served_nothing_passes_preflight(tmp_path: Path) -> None:
    async with sandbox_world(tmp_path, prometheus=False, quiet_canary=True) as world:
        sandbox = world.sandbox
        assert world.replicas(CANARY) == (1, 1)
        assert world.service()["spec"]["selector"] == PINNED_TO_V1
        # Traffic flows through the Service, and none of it reaches v2.
        await world.wait_for(
            lambda s: sandbox.traffic.stats.deployment_total(STABLE) >= 30, 30, "v1 traffic"
        )
        assert sandbox.traffic.stats.deployment_total(CANARY) == 0
        [v2] = [p for p in sandbox.runtime.pods() if p.deployment == CANARY]
        assert "zai_proxy_requests_total" not in v2.proxy.render_metrics()

        async with running_controller(world, quiet_spec()):
            state = await world.wait_phase("completed", "failed", timeout=60)
        assert state["phase"] == "completed", state["message"]
        decisions = [h["decision"] for h in state["history"]]
        assert "preflight-failed" not in decisions and "preflight-waiting" not in decisions
        # Preflight passed while v2 was still quiet: traffic reached it only after ptc set the
        # shared selector.
        assert decisions.index("preflight-passed") < decisions.index("select-shared")
        assert sandbox.traffic.stats.deployment_total(CANARY) > 0
        assert world.monitor.checks > 0 and not world.monitor.violations


async def test_requests_total_at_start_waits_visibly_then_fails_and_retry_is_free(
    tmp_path: Path,
) -> None:
    # Only a free retry can apply here: one attempt in all and an hour of cooldown.
    spec = quiet_spec(rollback={"cooldown": "1h", "maxAttempts": 1})
    spec["preflight"] = {
        "port": 8080,
        "metrics": {"atStart": ["zai_proxy_requests_total"]},
        "startGrace": "1h",
        "timeout": "6s",
    }
    async with (
        sandbox_world(tmp_path, prometheus=False, quiet_canary=True) as world,
        running_controller(world, spec) as ctl,
    ):
        state = await world.wait_for(
            lambda s: s is not None and s["message"].startswith("preflight waiting"),
            20,
            "the preflight wait",
        )
        assert state is not None and state["phase"] == "preflight"
        assert "lacks zai_proxy_requests_total yet" in state["message"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{ctl.server.url}/api/v1/rollouts/zai-proxy") as r,
        ):
            status = await r.json()
        assert status["phase"] == "preflight"
        assert "lacks zai_proxy_requests_total yet" in status["waiting"]
        code, out, _ = await ptc(world, "status")
        assert code == 0 and "lacks zai_proxy_requests_total" in out

        failed = await world.wait_phase("failed", timeout=30)
        assert failed["end"]["failedIn"] == "preflight"
        assert "preflight still waiting after 6s (preflight.timeout)" in failed["message"]
        assert world.replicas(CANARY) == (1, 1)  # nothing was acted on
        assert world.service()["spec"]["selector"] == PINNED_TO_V1

        code, out, _ = await ptc(world, "retry", "zai-proxy")
        assert code == 0 and "retry applied" in out, out
        state = world.state()
        assert state is not None and state["attempt"] == 1 and state["end"] is None
        retried = [h for h in state["history"] if h["decision"] == "retried"]
        assert len(retried) == 1 and retried[0]["by"] == "alice"
