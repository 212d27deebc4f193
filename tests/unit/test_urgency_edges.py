"""Urgency at the edges of a reconcile: a takeover's claim, and the background history writes."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.priority import Urgency
from controller.core.state import Phase
from controller.shell.gate import URGENCY
from tests.unit.test_behind_priorities import RecordingKube
from tests.unit.test_reconciler_echo import state, world


@pytest.mark.parametrize(
    ("phase", "expected"),
    [(Phase.ROLLING_BACK, Urgency.ROLLBACK), (Phase.PROGRESSING, Urgency.ROUTINE)],
)
async def test_a_takeover_claim_goes_at_the_urgency_of_what_it_claims(
    phase: Phase, expected: Urgency
) -> None:
    # A new leader's first writes are its claim; behind, they must not queue behind routine
    # work when what they claim is a rollback under way (and take no urgent slot otherwise).
    async with world(state(writer="ptc-old", phase=phase), stable=3, canary=1) as w:
        kube = RecordingKube(w.kube)
        w.reconciler.kube = kube  # type: ignore[assignment]
        await w.reconciler.reconcile_once()
        assert kube.urgencies == [
            ("annotate_deployment", expected),
            ("annotate_deployment", expected),
            ("annotate_configmap", expected),  # none yet (404): created, empty and claimed
            ("write_configmap", expected),
            ("patch_service", expected),
        ]


async def test_history_writes_stay_routine_after_an_urgent_decision() -> None:
    # The history ConfigMap is best-effort bookkeeping: the drain task started by an abort's
    # reconcile must not inherit the abort's rollback urgency (it would take urgent slots).
    async with world(state(), stable=3, canary=1) as w:
        seen: list[Urgency] = []
        history_kube = w.reconciler.history._kube

        async def recording_get(*args: Any, **kwargs: Any) -> Any:
            seen.append(URGENCY.get())
            return await history_kube.get_configmap(*args, **kwargs)

        class Recording:
            def __getattr__(self, name: str) -> Any:
                return recording_get if name == "get_configmap" else getattr(history_kube, name)

        w.reconciler.history._kube = Recording()
        w.cluster.write_command("abort", "abort-1")
        await w.deliver()
        await w.reconciler.reconcile_once()
        await w.reconciler.history.flush()
        assert seen and set(seen) == {Urgency.ROUTINE}, seen
