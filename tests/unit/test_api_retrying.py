"""One retry layer: the client retries transient errors; the reconciler only requeues, and an
error no retry fixes becomes a problem a person is told about once."""

from __future__ import annotations

import pytest

from controller.shell.kube import Conflict, Forbidden, Invalid, NotFound, NotLeader, Unavailable
from controller.shell.kube.retrying import PERMANENT_BACKOFF, TRANSIENT_BACKOFF, after_api_error
from controller.shell.metrics import Metrics
from controller.shell.reconciler import RolloutReconciler
from tests.unit.fake_cluster import FakeCluster, FakeKube, caches_for, populate
from tests.unit.test_reconciler_echo import SPEC, T0, SteppedClock


def test_transient_errors_back_off_to_a_cap() -> None:
    delays = [after_api_error(Unavailable("x"), n).delay for n in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert all(after_api_error(Unavailable("x"), n).problem is None for n in range(1, 9))
    assert TRANSIENT_BACKOFF == (1.0, 30.0)


@pytest.mark.parametrize("error", [Forbidden, Invalid, NotFound])
def test_errors_no_retry_fixes_are_a_problem_retried_slowly(error: type[Exception]) -> None:
    plans = [after_api_error(error("patch services devpod/zai-proxy: denied"), n) for n in (1, 5)]
    assert [p.delay for p in plans] == [PERMANENT_BACKOFF[0], PERMANENT_BACKOFF[1]]
    problem = plans[0].problem
    assert problem is not None and error.__name__ in problem and "denied" in problem
    # The same problem reads the same at every try: one Event, not one per retry.
    assert plans[0].problem == plans[1].problem


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ('deployments.apps "web" is forbidden: User "x" cannot patch resource', "grant the"),
        (
            'deployments.apps "web" is forbidden: ValidatingAdmissionPolicy '
            "'ptc-claim-guard.ops' with binding 'ptc-claim-guard.ops' denied request: "
            "ptc may change only ...",
            "admission policy or webhook refused it",
        ),
        (
            'admission webhook "policy.example.com" denied the request: no updates',
            "admission policy or webhook refused it",
        ),
    ],
)
def test_a_refusal_by_admission_is_not_told_to_grant_a_permission(message: str, hint: str) -> None:
    problem = after_api_error(Forbidden(message, status=403), failures=1).problem
    assert problem is not None and hint in problem and message in problem
    assert ("grant the permission" in problem) == (hint == "grant the")


def test_losing_leadership_is_no_failure() -> None:
    plan = after_api_error(NotLeader("not sent"), 7)
    assert (plan.counts_as_failure, plan.problem) == (False, None)


async def test_a_refused_write_reaches_status_and_one_event() -> None:
    cluster = FakeCluster()
    populate(cluster, {}, stable=4, canary=0)
    caches = await caches_for(cluster)
    kube = FakeKube(cluster, caches)
    reconciler = RolloutReconciler(
        SPEC, kube, caches, None, Metrics(), identity="t", clock=SteppedClock(T0)
    )  # type: ignore[arg-type]
    try:
        denied = Forbidden('deployments.apps "zai-proxy-v2" is forbidden: cannot patch')
        for n in (1, 2, 3):
            plan = await reconciler.after_api_error(denied, n)
        assert plan.delay == PERMANENT_BACKOFF[0] * 4
        refused = [e for e in kube.events if e[1] == "ApiRequestRefused"]
        assert len(refused) == 1 and "cannot patch" in refused[0][2]
        assert "cannot patch" in (reconciler.status()["problem"] or "")
        # A transient error is only retried: no Event, no problem.
        reconciler._last_problem = None
        await reconciler.after_api_error(Unavailable("timeout"), 1)
        assert len([e for e in kube.events if e[1] == "ApiRequestRefused"]) == 1
        assert reconciler.status()["problem"] is None
    finally:
        for kind in ("pods", "deployments", "services", "endpointslices"):
            await getattr(caches, kind).stop()


def test_conflict_is_not_planned_here() -> None:
    """The reconciler re-reads on 409 before it gets here; a Conflict that does arrive is
    treated as transient (a retry with a fresh read fixes it)."""
    assert after_api_error(Conflict("x"), 1).problem is None


async def test_a_wait_for_an_event_is_bounded_by_the_resync() -> None:
    """Nothing is waited on for good: a missed event is made up for at the next resync."""
    from datetime import timedelta

    from controller.core.rollout import Wait
    from controller.shell.reconciler import RESYNC_SECONDS

    cluster = FakeCluster()
    populate(cluster, {}, stable=4, canary=0)
    caches = await caches_for(cluster)
    clock = SteppedClock(T0)
    reconciler = RolloutReconciler(
        SPEC, FakeKube(cluster, caches), caches, None, Metrics(), identity="t", clock=clock
    )  # type: ignore[arg-type]
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    reconciler._sleep = record  # type: ignore[method-assign]
    try:
        assert 0.8 * RESYNC_SECONDS <= reconciler.resync_seconds <= 1.2 * RESYNC_SECONDS
        await reconciler._wait(Wait(None))  # until the next event: bounded by the resync
        await reconciler._wait(Wait(T0 + timedelta(hours=24)))  # retention: bounded too
        await reconciler._wait(Wait(T0 + timedelta(seconds=7)))  # a near deadline wins
        assert slept == [reconciler.resync_seconds, reconciler.resync_seconds, 7.0]
    finally:
        for kind in ("pods", "deployments", "services", "endpointslices"):
            await getattr(caches, kind).stop()
