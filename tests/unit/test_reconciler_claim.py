"""A new leader claims a rollout before it acts on it (issue 12): an annotation on each
Deployment and on the history ConfigMap, then the state with its name as writer.

The claim moves every resourceVersion a write of the rollout is conditioned on, so a state
patch, a scale or a history write a deposed leader still has on its way — sent in its term,
applied late — fails its precondition instead of landing over what the new leader decides. The
real-process proof is tests/e2e/test_fencing.py.
"""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from controller.core.state import STATE_ANNOTATION, Phase, encode_state
from controller.shell.history import configmap_name
from controller.shell.kube import Conflict, Forbidden, NotLeader
from controller.shell.reconciler.claim import CLAIM_ANNOTATION
from tests.unit.test_reconciler_echo import CANARY, ORDERS, SPEC, STABLE, World, state, world

HISTORY = configmap_name(SPEC.service)


@pytest.mark.parametrize("order", ORDERS)
async def test_the_first_write_after_a_takeover_is_the_claim_then_the_action(order: str) -> None:
    previous = state(writer="ptc-old")
    async with world(previous, stable=4, canary=0) as w:
        w.kube.order = order
        seen_by_old = w.cluster.objects["services"]["zai-proxy"]["metadata"]["resourceVersion"]
        await w.reconciler.reconcile_once()
        assert w.kube.scales == []  # not before the claim
        assert len(w.kube.service_patches) == 1
        # each object the rollout writes, the Service (the writer: the claim is done) last
        assert w.cluster.commits[-4:] == [
            ("deployments", STABLE),
            ("deployments", CANARY),
            ("configmaps", HISTORY),
            ("services", "zai-proxy"),
        ]
        assert w.state().writer == "ptc-test"
        assert w.state().step == previous.step and w.state().phase is previous.phase

        # The deposed leader's state patch, decided on what it saw, arrives now: refused.
        late = encode_state(previous.moved(step=1))
        with pytest.raises(Conflict):
            await w.kube.patch_service(
                "devpod",
                "zai-proxy",
                resource_version=seen_by_old,
                annotations={STATE_ANNOTATION: late},
            )

        await w.deliver()
        await w.reconciler.reconcile_once()
        assert w.kube.scales == [(CANARY, 1)]  # then it acts, once
        assert len(w.kube.service_patches) == 2


async def test_no_claim_on_a_state_of_our_own_or_of_no_writer() -> None:
    for writer in ("ptc-test", None):
        async with world(state(writer=writer), stable=4, canary=0) as w:
            await w.reconciler.reconcile_once()
            assert w.kube.scales == [(CANARY, 1)]  # the action at once
            assert len(w.kube.service_patches) == 1  # with its own state write only


async def test_no_claim_of_a_finished_rollout_that_needs_nothing() -> None:
    done = state(phase=Phase.COMPLETED, writer="ptc-old", step=len(SPEC.steps))
    async with world(done, stable=0, canary=4, selector={"app": "zai-proxy", "version": "v2"}) as w:
        await w.reconciler.reconcile_once()
        assert w.kube.service_patches == []
        assert w.kube.scales == []


@pytest.mark.parametrize("order", ORDERS)
async def test_a_deposed_leaders_scale_and_history_write_fail_after_the_claim(order: str) -> None:
    """The holes the Service-only claim left: the deposed leader read the stable Deployment
    and the history ConfigMap before the takeover, and nobody has written them since but the
    claim. Its late scale and history PUT are refused; the claim restarts no pod."""
    async with world(state(writer="ptc-old"), stable=4, canary=0) as w:
        w.kube.order = order
        seen = w.cluster.objects["deployments"][STABLE]["metadata"]["resourceVersion"]
        template = w.cluster.objects["deployments"][STABLE]["spec"]
        history_version = await w.kube.write_configmap(
            "devpod", HISTORY, {"history": "[]"}, resource_version=None
        )
        await w.reconciler.reconcile_once()  # the claim
        claimed = w.cluster.objects["deployments"][STABLE]
        assert claimed["metadata"]["annotations"][CLAIM_ANNOTATION].startswith("ptc-test/")
        assert claimed["spec"] == template  # metadata only: no pod is replaced
        history = w.cluster.objects["configmaps"][HISTORY]
        assert history["metadata"]["annotations"][CLAIM_ANNOTATION].startswith("ptc-test/")
        assert history["data"] == {"history": "[]"}  # not rewritten, only annotated

        with pytest.raises(Conflict):  # its stable scale-down, decided on what it saw
            await w.kube.scale("devpod", STABLE, 3, resource_version=seen)
        with pytest.raises(Conflict):  # its history write
            await w.kube.write_configmap(
                "devpod", HISTORY, {"history": "[1]"}, resource_version=history_version
            )
        assert w.cluster.objects["deployments"][STABLE]["spec"]["replicas"] == 4

        w.clock.step(1)
        await w.reconciler.reconcile_once()  # then it acts, on the claimed versions
        assert w.kube.scales == [(CANARY, 1)]


async def test_the_claim_creates_a_missing_history_configmap_so_a_late_create_fails() -> None:
    async with world(state(writer="ptc-old"), stable=4, canary=0) as w:
        await w.reconciler.reconcile_once()
        created = w.cluster.objects["configmaps"][HISTORY]
        assert created["data"]["history"] == "[]"
        assert created["data"]["target"] == state().revision
        with pytest.raises(Conflict):  # the deposed leader's first history write: a create
            await w.kube.write_configmap(
                "devpod", HISTORY, {"history": "[1]"}, resource_version=None
            )


async def test_a_claim_cut_short_is_made_again_whole() -> None:
    """The Service (the writer) is written last: a claim that failed before it is redone."""
    async with world(state(writer="ptc-old"), stable=4, canary=0) as w:
        await w.kube.write_configmap("devpod", HISTORY, {"history": "[]"}, resource_version=None)
        w.cluster.write_command("pause", "pause-1", by="bob")  # moves the Service under it
        with pytest.raises(Conflict):
            await w.reconciler.reconcile_once()
        assert w.state().writer == "ptc-old"
        first = list(w.kube.claims)
        await w.deliver()
        w.clock.step(1)
        await w.reconciler.reconcile_once()
        assert w.state().writer == "ptc-test"
        assert w.kube.claims == first * 2  # every object claimed again, with a new mark
        marks = {
            w.cluster.objects[kind][name]["metadata"]["annotations"][CLAIM_ANNOTATION]
            for kind, name in first
        }
        assert marks == {f"ptc-test/{w.clock.now.isoformat(timespec='milliseconds')}"}


async def test_a_missing_deployment_is_not_claimed() -> None:
    async with world(state(writer="ptc-old"), stable=4, canary=0) as w:
        del w.cluster.objects["deployments"][CANARY]
        await w.reconciler.reconcile_once()
        assert ("deployments", CANARY) not in w.kube.claims
        assert w.state().writer == "ptc-test"


def refuse(w: World, method: str, error: Exception) -> None:
    """Make the fake API server answer `method` with `error`."""

    async def refused(*args: object, **kwargs: object) -> None:
        raise error

    setattr(w.kube, method, refused)


async def test_a_history_configmap_that_cannot_be_claimed_does_not_hold_the_rollout() -> None:
    # Best effort, like every history write: left unclaimed, a late history write only adds
    # records that were in the deposed leader's state.
    async with world(state(writer="ptc-old"), stable=4, canary=0) as w:
        refuse(w, "annotate_configmap", Forbidden("configmaps is forbidden", status=403))
        with capture_logs() as logs:
            await w.reconciler.reconcile_once()
        assert w.state().writer == "ptc-test"
        assert {name for _, name in w.kube.claims} == {STABLE, CANARY}
        assert any(e["event"] == "history configmap not claimed" for e in logs), logs


@pytest.mark.parametrize(
    ("method", "error"),
    [
        ("annotate_deployment", Forbidden("deployments is forbidden", status=403)),
        ("annotate_configmap", NotLeader("not sent, this process is no longer the leader")),
    ],
)
async def test_a_claim_that_cannot_fence_is_not_completed(method: str, error: Exception) -> None:
    # A Deployment left unclaimed could take a late scale; a process that is no longer the
    # leader must not write the state: either way the state keeps the old writer, and the
    # next reconcile claims again.
    async with world(state(writer="ptc-old"), stable=4, canary=0) as w:
        refuse(w, method, error)
        with pytest.raises(type(error)):
            await w.reconciler.reconcile_once()
        assert w.state().writer == "ptc-old"
        assert w.kube.service_patches == [] and w.kube.scales == []
