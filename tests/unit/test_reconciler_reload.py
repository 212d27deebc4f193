"""The reconciler applies what `controller.core.rollout.reload` decides about a reloaded spec."""

from __future__ import annotations

from controller.core.rollout import SpecChange, target_hash
from controller.core.state import STATE_ANNOTATION, Phase, encode_state
from tests.unit.fake_cluster import service
from tests.unit.rollout_model import make_spec
from tests.unit.test_reconciler_echo import SPEC, state, world

V3 = make_spec(
    analysis={"interval": "10s", "metrics": []},
    canary={"deployment": "zai-proxy-v3", "version": "v3"},
)
TWEAK = make_spec(analysis={"interval": "20s", "metrics": []})


async def test_a_new_target_is_kept_back_until_the_rollout_in_flight_ends() -> None:
    async with world(state(), stable=3, canary=1) as w:
        r = w.reconciler
        assert r.update_spec(V3, 2) is SpecChange.DEFERRED
        assert r.spec is SPEC and r.status()["pendingConfig"] is True
        # The rollout in flight goes on with the spec it started with (no "in flight" wait).
        await r.reconcile_once()
        assert w.state().hold is not None
        assert r.spec is SPEC

        # It ends (a person's rollback, say): the next reconcile applies the new target.
        ended = encode_state(state(phase=Phase.ROLLED_BACK))
        w.cluster.commit("services", service({STATE_ANNOTATION: ended}))
        await w.deliver()
        w.clock.step(1)
        await r.reconcile_once()
        assert r.spec is V3 and r.generation == 2
        assert r.status()["pendingConfig"] is False
        assert w.state().revision == target_hash(V3)  # a new rollout of V3 started


async def test_a_tweak_applies_at_once_mid_rollout() -> None:
    async with world(state(), stable=3, canary=1) as w:
        assert w.reconciler.update_spec(TWEAK, 2) is SpecChange.APPLIED
        assert w.reconciler.spec is TWEAK and w.reconciler.generation == 2
        assert w.reconciler.update_spec(TWEAK, 3) is SpecChange.UNCHANGED
