"""A rollout with 25 metrics completes against an API server that enforces the 256 KiB limit.

Before issue 12 the state annotation carried 50 decisions with every metric's reading: with
about 22 metrics every state write was refused (422 FieldValueTooLong, as the sandbox does) and
the reconciler retried forever. Now the annotation is bounded and the full history, readings
included, is in the history ConfigMap.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import (
    BAD_GATEWAY,
    NS,
    SERVICE,
    rollout_spec,
    running_controller,
    sandbox_world,
)

pytestmark = [pytest.mark.e2e, pytest.mark.prometheus, pytest.mark.slow]

METRICS = [{**BAD_GATEWAY, "name": f"bad-gateway-ratio-{i:02d}"} for i in range(25)]


async def test_a_rollout_with_25_metrics_completes(tmp_path: Path) -> None:
    spec = rollout_spec()
    spec["analysis"] = {**spec["analysis"], "metrics": METRICS}
    async with sandbox_world(tmp_path) as world, running_controller(world, spec):
        state = await world.wait_phase("completed", timeout=180)
        raw = world.service()["metadata"]["annotations"]["ptc.dev/state"]
        assert len(raw.encode()) < 16 * 1024
        annotation = world.annotation()
        assert annotation is not None and len(annotation["history"]) <= 10
        # The full history, every decision judged with all 25 readings, is in the ConfigMap.
        cm = world.sandbox.api.get("configmaps", f"ptc-history-{SERVICE}", NS)
        recorded = json.loads(cm["data"]["history"])
        decisions = [r["decision"] for r in recorded]
        assert decisions[0] == "started"
        assert decisions.count("step-reached") == 3 and "flipped" in decisions
        advances = [r for r in recorded if r["decision"] in ("advance", "flip")]
        assert advances and all(len(r["metrics"]) == 25 for r in advances)
        assert [r["decision"] for r in state["history"]][-1] == "completed"
