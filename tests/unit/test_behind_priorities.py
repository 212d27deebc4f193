"""A behind controller acts on rollbacks and commands before routine work (issue 14 item 3).

Saturation is built, not timed: a provider whose every query waits until the test releases it
(a Prometheus that cannot keep up) under 60 rollouts' evaluations, and a fake API that records
the urgency each write was sent with. Nothing sleeps; the tests release work one piece at a time
and count what ran first.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from controller.core.analysis.evaluate import Measurement, Sample
from controller.core.config.model import Analysis, Rollout
from controller.core.priority import GatePolicy, Urgency
from controller.core.rollout.types import Command, CommandKind
from controller.core.state import Phase
from controller.shell.analysis_runner import AnalysisReport, AnalysisRunner, restored
from controller.shell.gate import URGENCY, PriorityGate
from tests.unit.fake_cluster import FakeKube, SteppedClock, until
from tests.unit.rollout_model import T0, make_spec
from tests.unit.test_reconciler_echo import state, world

NAME = "bad-gateway-ratio"
METRIC = {
    "name": NAME,
    "counterRatio": {"metric": "zai_proxy_requests_total", "numerator": {"status_code": "502"}},
    "max": 0.05,
    "for": "60s",
}


def rollout(i: int) -> Rollout:
    spec = make_spec(analysis={"interval": "10s", "metrics": [METRIC]})
    return spec.model_copy(update={"name": f"r{i:03d}"})


class SlowPrometheus:
    """Every measure() waits until the test releases it; records the order they started."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def measure(
        self, rollout: Rollout, analysis: Analysis, *, tick: datetime | None = None
    ) -> dict[str, Measurement]:
        self.started.append(rollout.name)
        await self.release.setdefault(rollout.name, asyncio.Event()).wait()
        return {NAME: Measurement(NAME, Sample(0.30, 1000))}

    async def capacity(self, *args: Any) -> tuple[Sample, Sample]:
        raise AssertionError("no capacity gate configured")

    async def close(self) -> None:
        pass

    def finish(self, name: str) -> None:
        self.release.setdefault(name, asyncio.Event()).set()


async def test_a_breaching_evaluation_runs_before_a_backlog_of_routine_ones() -> None:
    prometheus = SlowPrometheus()
    gate = PriorityGate(GatePolicy(capacity=4, routine_budget=3))
    clock = SteppedClock(T0)
    delivered: list[str] = []

    def runner(i: int, breaching: bool) -> AnalysisRunner:
        def on_result(report: AnalysisReport) -> None:
            delivered.append(report.rollout)

        previous = restored({NAME: T0}, T0) if breaching else None
        return AnalysisRunner(
            rollout(i), prometheus, on_result, previous=previous, clock=clock, gate=gate
        )

    routine = [runner(i, breaching=False) for i in range(60)]
    evaluations = [asyncio.create_task(r.evaluate_once()) for r in routine]
    await until(lambda: len(prometheus.started) == 3)  # the routine budget, then they queue
    assert gate.waiting() == {Urgency.ROUTINE: 57}

    breaching = runner(99, breaching=True)  # a `for:` is running: a rollback may follow
    evaluations.append(asyncio.create_task(breaching.evaluate_once()))
    await until(lambda: "r099" in prometheus.started)  # at once: a slot is kept for it
    prometheus.finish("r099")
    await until(lambda: "r099" in delivered)
    assert len(delivered) == 1  # before any of the 60 routine evaluations finished

    # the routine backlog drains in arrival order, never more than its budget at a time
    for name in [r.rollout.name for r in routine]:
        prometheus.finish(name)
    await asyncio.gather(*evaluations)
    assert prometheus.started[:3] == ["r000", "r001", "r002"]
    assert [n for n in prometheus.started if n != "r099"] == [f"r{i:03d}" for i in range(60)]
    assert gate.admitted == {Urgency.ROUTINE: 60, Urgency.BREACHING: 1}


class RecordingKube(FakeKube):
    """A FakeKube that notes the urgency in force at each write (what the transport sees)."""

    def __init__(self, kube: FakeKube) -> None:
        super().__init__(kube.cluster, kube.caches)
        self.urgencies: list[tuple[str, Urgency]] = []

    def _note(self, what: str) -> None:
        self.urgencies.append((what, URGENCY.get()))

    async def scale(self, *args: Any, **kwargs: Any) -> str:
        self._note("scale")
        return await super().scale(*args, **kwargs)

    async def patch_service(self, *args: Any, **kwargs: Any) -> Any:
        self._note("patch_service")
        return await super().patch_service(*args, **kwargs)

    async def emit_event(self, *args: Any, **kwargs: Any) -> None:
        self._note("emit_event")
        await super().emit_event(*args, **kwargs)

    async def annotate_deployment(self, *args: Any, **kwargs: Any) -> Any:
        self._note("annotate_deployment")
        return await super().annotate_deployment(*args, **kwargs)

    async def annotate_configmap(self, *args: Any, **kwargs: Any) -> Any:
        self._note("annotate_configmap")
        return await super().annotate_configmap(*args, **kwargs)

    async def write_configmap(self, *args: Any, **kwargs: Any) -> Any:
        self._note("write_configmap")
        return await super().write_configmap(*args, **kwargs)


@pytest.mark.parametrize(
    ("command", "expected", "phase"),
    [
        (None, Urgency.ROUTINE, Phase.PROGRESSING),
        ("pause", Urgency.COMMAND, Phase.PAUSED),
        ("abort", Urgency.ROLLBACK, Phase.ROLLING_BACK),
    ],
)
async def test_a_reconcile_sends_its_writes_at_the_urgency_of_its_decision(
    command: str | None, expected: Urgency, phase: Phase
) -> None:
    async with world(state(), stable=3, canary=1) as w:
        kube = RecordingKube(w.kube)
        w.reconciler.kube = kube  # type: ignore[assignment]
        if command is not None:
            w.cluster.write_command(command, f"{command}-1")
            await w.deliver()
        w.clock.step(1)
        await w.reconciler.reconcile_once()
        assert w.state().phase is phase
        assert kube.urgencies, "the reconcile wrote nothing"
        assert {u for _, u in kube.urgencies} == {expected}
        assert URGENCY.get() is Urgency.ROUTINE  # nothing leaks past the reconcile


async def test_an_alert_routes_its_command_write_as_a_command() -> None:
    async with world(state(), stable=3, canary=1) as w:
        kube = RecordingKube(w.kube)
        w.reconciler.kube = kube  # type: ignore[assignment]
        await w.reconciler.alert(Command(CommandKind.ABORT, "alert-1", by="alertmanager"))
        assert kube.urgencies == [("patch_service", Urgency.COMMAND)]
        assert URGENCY.get() is Urgency.ROUTINE


async def test_an_applied_command_left_on_the_service_is_routine_again() -> None:
    # the annotation stays after it is applied: its later reconciles must not jump the queue
    async with world(state(last_command="pause-1"), stable=3, canary=1) as w:
        kube = RecordingKube(w.kube)
        w.reconciler.kube = kube  # type: ignore[assignment]
        w.cluster.write_command("pause", "pause-1")
        await w.deliver()
        assert w.reconciler._urgency() is Urgency.ROUTINE
        await w.reconciler.reconcile_once()  # the step is reached: a routine Persist
        assert kube.urgencies and {u for _, u in kube.urgencies} == {Urgency.ROUTINE}


async def test_a_command_reconcile_starts_while_routine_reconciles_fill_their_budget() -> None:
    gate = PriorityGate(GatePolicy(capacity=3, routine_budget=2))
    release = asyncio.Event()

    async def routine_reconcile() -> None:  # another rollout's, stuck on a slow API server
        async with gate.slot(Urgency.ROUTINE):
            await release.wait()

    others = [asyncio.create_task(routine_reconcile()) for _ in range(10)]
    await until(lambda: gate.waiting() == {Urgency.ROUTINE: 8})
    async with world(state(), stable=3, canary=1) as w:
        w.reconciler.reconcile_gate = gate
        routine = asyncio.create_task(w.reconciler.reconcile_once())
        await until(lambda: gate.waiting() == {Urgency.ROUTINE: 9})  # it queues behind them
        routine.cancel()
        await asyncio.gather(routine, return_exceptions=True)

        w.cluster.write_command("abort", "abort-1")
        await w.deliver()
        assert w.reconciler._urgency() is Urgency.COMMAND
        async with asyncio.timeout(5):  # queued behind the routine ones, it would never start
            await w.reconciler.reconcile_once()
        assert w.state().phase is Phase.ROLLING_BACK
        assert gate.waiting() == {Urgency.ROUTINE: 8}
    release.set()
    await asyncio.gather(*others)
