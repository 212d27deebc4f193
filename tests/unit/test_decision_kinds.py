"""Decision kinds: each carries its record's name, its Event's reason and type; the shell
counts rollbacks by kind, so rewording an Event cannot silently stop the metric."""

from __future__ import annotations

import pytest

from controller.core.rollout import CommandKind, DecisionKind, EventType
from controller.core.state import Phase
from tests.unit.rollout_model import Driver, make_spec
from tests.unit.test_reconciler_echo import SPEC, state, world


def test_every_command_has_its_refusal_kind() -> None:
    for command in CommandKind:
        kind = DecisionKind.refused(command)
        assert kind.decision == f"{command.value}-refused"
        assert (kind.event_reason, kind.event_type) == ("CommandRefused", EventType.WARNING)


def test_a_pause_for_a_person_is_normal_one_past_max_hold_a_warning() -> None:
    assert DecisionKind.PAUSED.event_type is EventType.NORMAL
    assert DecisionKind.PAUSED_AT_MAX_HOLD.event_type is EventType.WARNING
    assert DecisionKind.PAUSED.decision == DecisionKind.PAUSED_AT_MAX_HOLD.decision


def test_each_events_kind_names_the_record_it_goes_with() -> None:
    """Through a whole rollout, its Events are the kinds' and each matches its record."""
    driver = Driver(make_spec(retention={"scaleDownDelay": "10m", "deleteStable": True}))
    driver.run(Phase.COMPLETED, first=True)
    evented = [d for d in driver.decisions if d.event is not None]
    assert {d.event.kind for d in evented if d.event} >= {
        DecisionKind.STARTED,
        DecisionKind.PREFLIGHT_PASSED,
        DecisionKind.STEP_REACHED,
        DecisionKind.ADVANCE,
        DecisionKind.FLIP,
        DecisionKind.FLIPPED,
        DecisionKind.BAKE_STARTED,
        DecisionKind.BAKE_PASSED,
        DecisionKind.RETENTION_STARTED,
        DecisionKind.STABLE_DELETED,
        DecisionKind.COMPLETED,
    }
    for d in evented:
        assert d.event is not None
        assert d.state.history[-1].decision == d.event.kind.decision
        assert (d.event.reason, d.event.type) == (
            d.event.kind.event_reason,
            d.event.kind.event_type,
        )


def rollbacks(metrics: object) -> float:
    value = metrics.registry.get_sample_value(  # type: ignore[attr-defined]
        "ptc_rollbacks_total", {"namespace": SPEC.namespace, "rollout": SPEC.name}
    )
    return value or 0.0


@pytest.mark.parametrize(("command", "counted"), [("abort", 1.0), ("pause", 0.0)])
async def test_the_rollbacks_metric_counts_rollback_decisions(command: str, counted: float) -> None:
    async with world(state(), stable=3, canary=1) as w:
        w.cluster.write_command(command, f"{command}-1")
        await w.deliver()
        await w.reconciler.reconcile_once()
        assert w.state().last_command == f"{command}-1"
        assert rollbacks(w.reconciler.metrics) == counted
        reasons = [reason for _, reason, _ in w.kube.events]
        assert ("RollbackStarted" in reasons) == bool(counted)
