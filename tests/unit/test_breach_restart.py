"""A crash or failover mid-``for:`` does not give a breaching canary a fresh clock (issue 12).

The reconciler persists the analysis's breach clocks with the state when they change, and a new
reconciler (a restarted or newly elected controller) restores them into its runner for the same
attempt and step. Evaluations are driven by hand at a stepped clock; the runner's own schedule
is an hour (its first tick, offset by the rollout's name hash, is minutes away), so nothing runs
behind the test's back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from controller.core.analysis.evaluate import Measurement, Sample, Verdict
from controller.core.config.model import Analysis, Rollout
from controller.core.rollout import target_hash
from controller.core.state import (
    STATE_ANNOTATION,
    BreachClocks,
    Hold,
    Phase,
    RolloutState,
    encode_state,
    read_state,
)
from controller.shell.metrics import Metrics
from controller.shell.reconciler import RolloutReconciler
from tests.unit.fake_cluster import FakeCluster, FakeKube, SteppedClock, caches_for, populate
from tests.unit.rollout_model import T0, make_spec
from tests.unit.states import state as make_state

NAME = "bad-gateway-ratio"
SPEC = make_spec(
    steps=[{"weight": 25, "hold": "30m"}, {"weight": 50, "hold": "30m"}],
    analysis={
        "interval": "1h",
        "metrics": [
            {
                "name": NAME,
                "counterRatio": {
                    "metric": "zai_proxy_requests_total",
                    "numerator": {"status_code": "502"},
                },
                "max": 0.05,
                "for": "60s",
            }
        ],
    },
)


class Breaching:
    """The canary's 502 ratio is 30 %, stable's 1 %: a canary-only breach, every time."""

    async def measure(
        self, rollout: Rollout, analysis: Analysis, *, tick: Any = None
    ) -> dict[str, Measurement]:
        return {NAME: Measurement(NAME, Sample(0.30, 1000), Sample(0.01, 1000))}

    async def capacity(self, *args: Any, **kwargs: Any) -> tuple[Sample, Sample]:
        raise AssertionError("no capacity gate configured")

    async def close(self) -> None:
        pass


def holding(**changes: Any) -> RolloutState:
    base: dict[str, Any] = {
        "phase": Phase.PROGRESSING,
        "target": target_hash(SPEC),
        "rollout": SPEC.name,
        "stable": SPEC.stable.deployment,
        "canary": SPEC.canary.deployment,
        "steps": len(SPEC.steps),
        "replicas": 4,
        "shared_selector": {"app": "zai-proxy"},
        "started_at": T0,
        "phase_since": T0,
        "hold": Hold(T0),
        "weight": 25.0,
    }
    base.update(changes)
    return make_state(base.pop("phase"), base.pop("target"), **base)


def persisted(cluster: FakeCluster) -> RolloutState:
    found = read_state(cluster.objects["services"]["zai-proxy"]["metadata"]["annotations"])
    assert found is not None
    return found


@asynccontextmanager
async def controller(cluster: FakeCluster, clock: SteppedClock) -> AsyncIterator[RolloutReconciler]:
    """One controller process: its own caches, reconciler and (once started) runner."""
    caches = await caches_for(cluster)
    reconciler = RolloutReconciler(
        SPEC,
        FakeKube(cluster, caches),  # type: ignore[arg-type]
        caches,
        Breaching(),
        Metrics(),
        identity="ptc-test",
        clock=clock,
    )
    try:
        yield reconciler
    finally:
        if reconciler._runner is not None:
            await reconciler._runner.stop()
        for kind in ("pods", "deployments", "services", "endpointslices"):
            await getattr(caches, kind).stop()


async def evaluate(reconciler: RolloutReconciler) -> Verdict:
    runner = reconciler._runner
    assert runner is not None, "no analysis running"
    report = await runner.evaluate_once()
    return report.summary.metrics[0].verdict


async def breach_then_crash(cluster: FakeCluster, clock: SteppedClock) -> None:
    """Breach from T0, for 50 s of the 60 s `for:`, then the controller dies."""
    async with controller(cluster, clock) as first:
        await first.reconcile_once()  # starts the analysis
        assert await evaluate(first) is Verdict.INCONCLUSIVE  # the clock starts at T0
        await first.reconcile_once()  # the clock is persisted
        assert persisted(cluster).breach == BreachClocks(1, 0, {NAME: T0})
        clock.step(50)
        assert await evaluate(first) is Verdict.INCONCLUSIVE  # 50 s of 60 s
        await first.reconcile_once()


async def test_a_restart_mid_for_keeps_the_breach_clock() -> None:
    cluster = FakeCluster()
    populate(cluster, {STATE_ANNOTATION: encode_state(holding())}, stable=3, canary=1)
    clock = SteppedClock(T0)
    await breach_then_crash(cluster, clock)

    clock.step(10)  # the new controller is up 60 s after the breach began
    async with controller(cluster, clock) as second:
        await second.reconcile_once()
        # A fresh clock would say "breaching for 0s of 60s" here.
        assert await evaluate(second) is Verdict.FAIL
        await second.reconcile_once()
        assert persisted(cluster).phase is Phase.ROLLING_BACK


async def test_clocks_of_another_attempt_are_not_restored() -> None:
    cluster = FakeCluster()
    populate(cluster, {STATE_ANNOTATION: encode_state(holding())}, stable=3, canary=1)
    clock = SteppedClock(T0)
    await breach_then_crash(cluster, clock)
    service = cluster.objects["services"]["zai-proxy"]
    moved = persisted(cluster).moved(attempt=2)  # e.g. retried in between
    service["metadata"]["annotations"][STATE_ANNOTATION] = encode_state(moved)

    clock.step(10)
    async with controller(cluster, clock) as second:
        await second.reconcile_once()
        assert await evaluate(second) is Verdict.INCONCLUSIVE  # judged afresh
        await second.reconcile_once()
        assert persisted(cluster).breach == BreachClocks(2, 0, {NAME: clock.now})
