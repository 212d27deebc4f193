"""Retention deletes the stable Deployment it kept: the uid recorded when retention started.

A Deployment re-created under the same name since (a person's) is not deleted; the Event, the
state's message and the log say so. States from a ptc that recorded no uid still decode.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from controller.core.rollout import (
    DecisionKind,
    DeleteDeployment,
    DeploymentView,
    Endpoints,
    EventType,
    Observed,
    Persist,
    decide,
    target_hash,
)
from controller.core.state import (
    End,
    Phase,
    Retention,
    RolloutState,
    decode_state,
    encode_state,
    format_timestamp,
)
from controller.shell.reconciler import StaleView
from tests.unit.rollout_model import T0, make_spec
from tests.unit.states import state as make_state
from tests.unit.test_reconciler_echo import state, world

SPEC = make_spec(retention={"scaleDownDelay": "10m", "deleteStable": True})
PINNED = {"app": "zai-proxy", "version": "v2"}


def observed(stable_uid: str, stable_replicas: int = 0) -> Observed:
    return Observed(
        stable=DeploymentView(True, stable_replicas, stable_replicas, uid=stable_uid),
        canary=DeploymentView(True, 4, 4, uid="canary-uid"),
        selector=PINNED,
        endpoints=Endpoints(canary=4),
    )


def scaling_down(since: timedelta | None = None, uid: str | None = None) -> RolloutState:
    """In retention for `since` (not started when None), with the stable's `uid` recorded."""
    return make_state(
        Phase.SCALING_DOWN,
        target_hash(SPEC),
        step=len(SPEC.steps),
        replicas=4,
        weight=100.0,
        shared_selector={"app": "zai-proxy"},
        started_at=T0 - timedelta(hours=1),
        phase_since=T0 - timedelta(minutes=20),
        retention=Retention(T0 - since, T0 - since + timedelta(minutes=10), uid)
        if since is not None
        else None,
    )


def test_retention_records_the_stable_deployments_uid_when_it_starts() -> None:
    d = decide(SPEC, scaling_down(), observed("uid-kept"), None, T0)
    assert isinstance(d.action, Persist) and d.event is not None
    assert d.event.kind is DecisionKind.RETENTION_STARTED
    assert d.state.retention == Retention(T0, T0 + timedelta(minutes=10), "uid-kept")
    assert decode_state(encode_state(d.state)) == d.state


def test_after_retention_only_the_kept_uid_is_deleted() -> None:
    kept = scaling_down(timedelta(minutes=11), "uid-kept")
    d = decide(SPEC, kept, observed("uid-kept"), None, T0)
    assert d.action == DeleteDeployment(d.action.role, "zai-proxy", uid="uid-kept")  # type: ignore[union-attr]


def test_a_replaced_stable_is_not_deleted_and_the_rollout_says_why() -> None:
    kept = scaling_down(timedelta(minutes=11), "uid-kept")
    d = decide(SPEC, kept, observed("uid-of-a-new-one"), None, T0)
    assert not isinstance(d.action, DeleteDeployment)
    assert d.state.phase is Phase.COMPLETED and d.state.end == End(T0)
    assert d.event is not None and d.event.type is EventType.WARNING
    assert d.event.reason == "StableNotDeleted"
    assert "NOT deleted" in d.state.message and "uid-of-a-new-one" in d.state.message
    assert d.state.history[-1].decision == "completed"


def test_a_state_without_a_recorded_uid_decodes_and_deletes_what_it_sees() -> None:
    """A state v1 written before ptc recorded the uid (no key): None, then the uid seen at
    delete time (what ptc did before)."""
    old = {
        "v": 1,
        "phase": "scaling-down",
        "target": target_hash(SPEC),
        "step": 3,
        "scaledDownAt": format_timestamp(T0 - timedelta(minutes=11)),
    }
    migrated = decode_state(json.dumps(old))
    assert migrated.retention == Retention(T0 - timedelta(minutes=11))
    d = decide(SPEC, migrated, observed("uid-seen"), None, T0)
    assert isinstance(d.action, DeleteDeployment) and d.action.uid == "uid-seen"


# -- the shell ----------------------------------------------------------------------------------


def over(uid: str) -> RolloutState:
    return state(
        phase=Phase.SCALING_DOWN,
        step=3,
        weight=100.0,
        retention=Retention(T0 - timedelta(minutes=11), stable_uid=uid),
    )


async def test_the_reconciler_deletes_with_the_recorded_uid() -> None:
    async with world(over("zai-proxy-uid"), stable=0, canary=4, selector=PINNED) as w:
        w.reconciler.update_spec(make_spec(**_same_as_echo(deleteStable=True)), 2)
        await w.reconciler.reconcile_once()
        assert "zai-proxy" not in w.cluster.objects["deployments"]
        assert ("Normal", "StableDeleted") in [(t, r) for t, r, _ in w.kube.events]


async def test_the_reconciler_leaves_a_replaced_stable_and_says_so() -> None:
    async with world(over("uid-before-the-person-re-created-it"), stable=0, canary=4) as w:
        w.reconciler.update_spec(make_spec(**_same_as_echo(deleteStable=True)), 2)
        await w.reconciler.reconcile_once()
        assert "zai-proxy" in w.cluster.objects["deployments"]
        assert ("Warning", "StableNotDeleted") in [(t, r) for t, r, _ in w.kube.events]
        assert w.state().phase is Phase.COMPLETED
        assert "NOT deleted" in w.reconciler.status()["message"]


async def test_a_replacement_the_cache_has_not_seen_is_refused_by_the_api_server() -> None:
    """The decision saw the kept uid; the server has a new one: 409, nothing deleted."""
    async with world(over("zai-proxy-uid"), stable=0, canary=4) as w:
        w.reconciler.update_spec(make_spec(**_same_as_echo(deleteStable=True)), 2)
        w.cluster.objects["deployments"]["zai-proxy"]["metadata"]["uid"] = "re-created"
        with pytest.raises(StaleView):
            await w.reconciler.reconcile_once()
        assert "zai-proxy" in w.cluster.objects["deployments"]
        assert w.state().phase is Phase.SCALING_DOWN


def _same_as_echo(**retention: Any) -> dict[str, Any]:
    """The echo tests' spec, with `retention` changed (the same rollout target)."""
    return {
        "analysis": {"interval": "10s", "metrics": []},
        "retention": {"scaleDownDelay": "10m", **retention},
    }
