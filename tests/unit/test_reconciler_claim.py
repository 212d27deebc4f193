"""A new leader claims a rollout (its state, with its name) before it acts on it (issue 12).

The claim moves the Service's resourceVersion, so a state patch a deposed leader still has on
its way — sent in its term, applied late — fails its precondition instead of landing over what
the new leader decides. The real-process proof is tests/e2e/test_fencing.py.
"""

from __future__ import annotations

import pytest

from controller.core.state import STATE_ANNOTATION, Phase, encode_state
from controller.shell.kube import Conflict
from tests.unit.test_reconciler_echo import CANARY, ORDERS, SPEC, state, world


@pytest.mark.parametrize("order", ORDERS)
async def test_the_first_write_after_a_takeover_is_the_claim_then_the_action(order: str) -> None:
    previous = state(writer="ptc-old")
    async with world(previous, stable=4, canary=0) as w:
        w.kube.order = order
        seen_by_old = w.cluster.objects["services"]["zai-proxy"]["metadata"]["resourceVersion"]
        await w.reconciler.reconcile_once()
        assert w.kube.scales == []  # not before the claim
        assert len(w.kube.service_patches) == 1
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
