"""Requests dropped per scale-down during a real rollout (controller + sandbox), per shifting mode.

The sandbox models termination as Kubernetes does (see controller/sandbox/kubelet.py): without a
preStop delay, a pod ptc scales down while the Service still routes to it refuses the requests
clients send it before they learn its endpoint is gone. `dropped_per_scale_down` runs one rollout
to completion and attributes every dropped request to the scale-down that terminated its pod, so
each shifting mode (a row in MODES) can be measured the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller.sandbox.selectors import selector_from_map
from tests.e2e.harness import (
    BAD_GATEWAY,
    CANARY,
    NS,
    STABLE,
    World,
    rollout_spec,
    running_controller,
    sandbox_world,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Rollout overrides per shifting mode (surge holds a second full copy: maxSurge 100%, steps
# up to 50%).
MODES: dict[str, dict[str, Any]] = {
    "standard": {},
    "surge": {
        "shifting": "surge",
        "maxSurge": "100%",
        "steps": [{"weight": 25, "hold": "3s"}, {"weight": 50, "hold": "3s"}],
    },
}


@dataclass
class Measured:
    """What one rollout cost the clients, and what ptc warned about beforehand."""

    scale_downs: list[ScaleDown]
    preflight_warnings: list[str]


@dataclass
class ScaleDown:
    """One decrease of a Deployment's replicas, and what it cost the clients."""

    deployment: str
    replicas: tuple[int, int]  # from, to
    serving: bool  # whether the Service selector still matched the Deployment's pods
    pods: set[str] = field(default_factory=set)  # the pods it terminated
    dropped: int = 0

    def __str__(self) -> str:
        where = "serving" if self.serving else "out of the Service"
        return (
            f"{self.deployment} {self.replicas[0]}->{self.replicas[1]} ({where}): "
            f"{self.dropped} dropped"
        )


async def _record_scale_downs(world: World, out: list[ScaleDown]) -> None:
    """Follow the store: each replicas decrease opens a ScaleDown; its deleted pods join it."""
    api = world.sandbox.api
    replicas = {d: api.get("deployments", d, NS)["spec"]["replicas"] for d in (STABLE, CANARY)}
    seen: set[str] = set()
    watch = api.store.watch(None, NS, cuttable=False)
    try:
        while (event := await watch.next()) is not None:
            _, obj = event
            meta = obj["metadata"]
            if obj.get("kind") == "Deployment" and meta["name"] in replicas:
                name, now = meta["name"], obj["spec"]["replicas"]
                if now < replicas[name]:
                    selector = world.service()["spec"]["selector"]
                    labels = obj["spec"]["template"]["metadata"]["labels"]
                    serving = selector_from_map(selector).matches(labels)
                    out.append(ScaleDown(name, (replicas[name], now), serving))
                replicas[name] = now
            elif obj.get("kind") == "Pod" and "deletionTimestamp" in meta:
                if meta["name"] in seen:
                    continue
                seen.add(meta["name"])
                deployment = meta["name"].rsplit("-", 2)[0]  # <deployment>-<hash>-<suffix>
                owner = next((s for s in reversed(out) if s.deployment == deployment), None)
                if owner is not None:
                    owner.pods.add(meta["name"])
    finally:
        watch.close()


async def dropped_per_scale_down(
    tmp_path: Path, overrides: dict[str, Any], *, pre_stop_seconds: int | None
) -> Measured:
    """Run one rollout to completion at 120 req/s; the dropped requests of each scale-down."""
    spec = rollout_spec(**overrides)
    spec["analysis"] = {**spec["analysis"], "provider": "direct", "metrics": [BAD_GATEWAY]}
    scale_downs: list[ScaleDown] = []
    async with sandbox_world(
        tmp_path, prometheus=False, traffic_rate=120, pre_stop_seconds=pre_stop_seconds
    ) as world:
        world.sandbox.traffic.reset_stats()  # count from the rollout's start
        recorder = asyncio.create_task(_record_scale_downs(world, scale_downs))
        try:
            async with running_controller(world, spec):
                await world.wait_phase("completed", timeout=120)
            # the last terminated pods exit after their preStop; then clients catch up
            runtime = world.sandbox.runtime
            terminated = {p for s in scale_downs for p in s.pods}
            await world.wait_for(
                lambda _: not terminated & {p.name for p in runtime.pods()}, 10, "pods exited"
            )
            await world.sandbox.endpoints_propagated()
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
        stats = world.sandbox.traffic.stats
        for s in scale_downs:
            s.dropped = sum(stats.dropped_by_pod[f"{NS}/{p}"] for p in s.pods)
        # every dropped request belongs to a pod some scale-down terminated
        assert sum(s.dropped for s in scale_downs) == stats.dropped, stats.dropped_by_pod
        warnings = [e["message"] for e in world.events() if e.get("reason") == "PreflightWarning"]
    return Measured(scale_downs, warnings)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("pre_stop_seconds", [None, 2], ids=["no-preStop", "preStop-2s"])
async def test_dropped_requests_per_scale_down(
    tmp_path: Path, mode: str, pre_stop_seconds: int | None
) -> None:
    measured = await dropped_per_scale_down(
        tmp_path, MODES[mode], pre_stop_seconds=pre_stop_seconds
    )
    scale_downs = measured.scale_downs
    print(f"\nshifting {mode}, preStop {pre_stop_seconds}:")
    for s in scale_downs:
        print(f"  {s}")
    serving = [s for s in scale_downs if s.serving]
    assert scale_downs and all(s.pods for s in scale_downs)
    # After the flip stable is out of the Service: scaling it to 0 drops nothing in any mode.
    assert all(s.dropped == 0 for s in scale_downs if not s.serving)
    pre_stop_warnings = [w for w in measured.preflight_warnings if "no preStop delay" in w]
    if pre_stop_seconds is None:
        # warned before it happened, as a PreflightWarning Event on the Service
        assert any(w.startswith(f"canary {CANARY}") for w in pre_stop_warnings)
    else:
        assert pre_stop_warnings == []
    warned_stable = any(w.startswith(f"stable {STABLE}") for w in pre_stop_warnings)
    assert warned_stable == (pre_stop_seconds is None and mode == "standard")
    if pre_stop_seconds is None and mode == "standard":
        assert serving and sum(s.dropped for s in serving) > 0
    else:
        assert all(s.dropped == 0 for s in serving)
