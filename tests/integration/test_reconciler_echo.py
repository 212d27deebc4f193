"""The reconciler over real HTTP, with the sandbox's watch echo forced before, with or after.

`ptc pause` written right after one of ptc's own writes must be acted on by the next
reconcile, whichever of the write's response and its watch echo the controller reads first.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from controller.core.rollout import target_hash
from controller.core.state import (
    COMMAND_ANNOTATION,
    STATE_ANNOTATION,
    Phase,
    RolloutState,
    encode_state,
    read_state,
)
from controller.sandbox.apiserver import ApiServer
from controller.shell.kube import Kube
from controller.shell.metrics import Metrics
from controller.shell.reconciler import RolloutReconciler
from controller.shell.snapshot import Caches
from tests.integration.conftest import eventually
from tests.unit.rollout_model import make_spec

NS = "default"
SPEC = make_spec(
    name="web",
    namespace=NS,
    service="web",
    sharedSelector={"app": "web"},
    stable={"deployment": "web"},
    canary={"deployment": "web-v2", "version": "v2"},
    replicas=3,
    steps=[{"weight": 33, "hold": "1h"}],
    analysis={"interval": "10s", "metrics": []},
)
KINDS = ("pods", "deployments", "services", "endpointslices")


@dataclass
class Controlled:
    reconciler: RolloutReconciler
    caches: Caches


@pytest.fixture
async def controlled(world: ApiServer, kube: Kube) -> AsyncIterator[Controlled]:
    """The `world` (web v1 x2, web-v2 x1, all Ready) mid-rollout at 33%, and its reconciler."""
    state = RolloutState(
        phase=Phase.PROGRESSING,
        target=target_hash(SPEC),
        rollout="web",
        stable="web",
        canary="web-v2",
        steps=1,
        replicas=3,
        shared_selector={"app": "web"},
    )
    world.patch(
        "Service", "web", {"metadata": {"annotations": {STATE_ANNOTATION: encode_state(state)}}}
    )
    caches = Caches(*(kube.informer(kind, NS) for kind in KINDS))  # type: ignore[arg-type]
    reconciler = RolloutReconciler(SPEC, kube, caches, None, Metrics(), identity="ptc-test")
    for kind in KINDS:
        informer = getattr(caches, kind)
        informer.subscribe(lambda t, o, kind=kind: reconciler.on_event(kind, t, o))
        await informer.start()
    for kind in KINDS:
        await getattr(caches, kind).wait_synced(5)
    yield Controlled(reconciler, caches)


def cluster_state(api: ApiServer) -> RolloutState:
    found = read_state(api.get("Service", "web", NS)["metadata"]["annotations"])
    assert found is not None
    return found


async def give(kube: Kube, caches: Caches, kind: str, command_id: str) -> None:
    """Write a command as `ptc <kind>` does; return once the controller's cache has it."""
    current = await kube.get_service(NS, "web")
    body = json.dumps({"kind": kind, "id": command_id, "by": "alice"})
    await kube.patch_service(
        NS, "web", resource_version=current.resource_version, annotations={COMMAND_ANNOTATION: body}
    )

    def arrived() -> bool:
        svc = caches.services.get("web")
        return svc is not None and command_id in svc.annotations.get(COMMAND_ANNOTATION, "")

    await eventually(arrived)


@pytest.mark.parametrize("order", ["before", "with", "after", "random"])
async def test_pause_right_after_our_write_is_applied_by_the_next_reconcile(
    world: ApiServer, kube: Kube, controlled: Controlled, order: str
) -> None:
    world.echo.mode = order
    for i in range(4 if order == "random" else 1):
        await controlled.reconciler.reconcile_once()  # ptc's own write (step reached / resume)
        assert cluster_state(world).phase is Phase.PROGRESSING

        await give(kube, controlled.caches, "pause", f"pause-{i}")
        await controlled.reconciler.reconcile_once()
        assert cluster_state(world).last_command == f"pause-{i}"
        assert cluster_state(world).phase is Phase.PAUSED

        await give(kube, controlled.caches, "resume", f"resume-{i}")
