"""Leader election against the sandbox API server: one leader at a time, hand-over, fencing.

Every test runs an exclusivity monitor that samples all electors' ``is_leader()`` every few
milliseconds (and whenever one reports a change) and fails on the first instant two of them
claim leadership. Each candidate has its own API connection, like separate pods.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from structlog.testing import capture_logs

from controller.sandbox.apiserver import ApiServer
from controller.shell.kube import Kube, LeaseInfo, Unavailable
from controller.shell.leader import ElectorStopped, LeaderElector
from controller.shell.lease import LeaderSettings
from tests.integration.conftest import FAST, eventually

NS = "default"
LEASE = "ptc-leader"
# Fast timings: the safety margin (lease - renew) is 0.4 s, far above scheduling noise here.
LEASE_DURATION = 1.0
RENEW_DEADLINE = 0.6
RETRY_PERIOD = 0.1
# Followers retry after retry_period · [1, 1.2); allow that plus a request and loop noise.
SLACK = 2 * RETRY_PERIOD * 1.2 + 0.3


def settings(identity: str) -> LeaderSettings:
    return LeaderSettings(
        namespace=NS,
        name=LEASE,
        identity=identity,
        lease_duration=timedelta(seconds=LEASE_DURATION),
        renew_deadline=timedelta(seconds=RENEW_DEADLINE),
        retry_period=timedelta(seconds=RETRY_PERIOD),
    )


class Clock:
    """The monotonic clock, plus an offset a test moves forward to simulate a paused process."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


class Leases:
    """A candidate's Lease calls: the real Kube, unless the test cuts it off.

    ``mode`` "error": every call fails at once with Unavailable (API unreachable, retries
    exhausted); "hang": every call waits until cancelled (a black-holed connection).
    ``writes`` keeps (sent at, holder written) for each successful create/update.
    """

    def __init__(self, kube: Kube, clock: Callable[[], float]) -> None:
        self.kube = kube
        self.clock = clock
        self.mode: Literal["ok", "error", "hang"] = "ok"
        self.calls = 0
        self.writes: list[tuple[float, str | None]] = []

    async def _gate(self) -> None:
        self.calls += 1
        if self.mode == "error":
            raise Unavailable("injected: the API server is unreachable")
        if self.mode == "hang":
            await asyncio.Event().wait()

    async def get_lease(self, namespace: str, name: str) -> LeaseInfo:
        await self._gate()
        return await self.kube.get_lease(namespace, name)

    async def create_lease(self, namespace: str, name: str, **spec: Any) -> LeaseInfo:
        return await self._write(lambda: self.kube.create_lease(namespace, name, **spec), spec)

    async def update_lease(self, namespace: str, name: str, **spec: Any) -> LeaseInfo:
        return await self._write(lambda: self.kube.update_lease(namespace, name, **spec), spec)

    async def _write(
        self, call: Callable[[], Awaitable[LeaseInfo]], spec: dict[str, Any]
    ) -> LeaseInfo:
        sent = self.clock()
        await self._gate()
        lease = await call()
        self.writes.append((sent, spec["holder"]))
        return lease

    def last_write_by(self, holder: str) -> float:
        return max(sent for sent, who in self.writes if who == holder)


@dataclass
class Candidate:
    elector: LeaderElector
    leases: Leases
    clock: Clock
    # (time.monotonic(), leading, holder) for each on_change call
    changes: list[tuple[float, bool, str | None]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.elector.identity

    def gained_at(self) -> float:
        return next(t for t, leading, _ in self.changes if leading)

    def lost_at(self) -> float:
        return next(t for t, leading, _ in self.changes if not leading and t >= self.gained_at())

    def leadership(self) -> list[bool]:
        """Leadership as reported, each change once (holder-only changes left out)."""
        out: list[bool] = []
        for _, leading, _ in self.changes:
            if (out[-1] if out else False) != leading:
                out.append(leading)
        return out


class Exclusivity:
    """Fails on the first instant two candidates claim leadership (the shared loop's view)."""

    def __init__(self) -> None:
        self.candidates: list[Candidate] = []
        self.violations: list[str] = []
        self.samples = 0

    def check(self) -> None:
        # no await between the calls: nothing can change leadership while they are read
        leaders = [c.name for c in self.candidates if c.elector.is_leader()]
        self.samples += 1
        if len(leaders) > 1:
            self.violations.append(f"{time.monotonic():.3f}: {leaders} all leading")

    async def watch(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(0.002)

    def assert_ok(self) -> None:
        assert not self.violations, self.violations[:5]
        assert self.samples > 0


@dataclass
class Election:
    """The candidates of one test and the monitor watching them."""

    api: ApiServer
    kubeconfig: Path
    monitor: Exclusivity
    kubes: list[Kube] = field(default_factory=list)

    async def candidate(
        self,
        identity: str,
        *,
        start: bool = True,
        on_change: Callable[[bool, str | None], None] | None = None,
    ) -> Candidate:
        kube = await Kube.connect(str(self.kubeconfig), policy=FAST)
        self.kubes.append(kube)
        clock = Clock()
        leases = Leases(kube, clock)
        changes: list[tuple[float, bool, str | None]] = []

        def changed(leading: bool, holder: str | None) -> None:
            changes.append((time.monotonic(), leading, holder))
            self.monitor.check()
            if on_change is not None:
                on_change(leading, holder)

        elector = LeaderElector(leases, settings(identity), clock=clock, on_change=changed)
        c = Candidate(elector, leases, clock, changes)
        self.monitor.candidates.append(c)
        if start:
            self.start(c)
        return c

    def start(self, c: Candidate) -> None:
        c.task = asyncio.create_task(c.elector.run(), name=f"ptc-leader-{c.name}")

    async def stopped(self, c: Candidate) -> None:
        """Stop ``c`` without releasing the Lease; its run() ends promptly."""
        c.elector.stop()
        if c.task is not None:
            await asyncio.wait_for(c.task, 1.0)

    def lease(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.api.get("Lease", LEASE, NS)["spec"]
        return spec


@pytest.fixture
async def election(api_server: ApiServer, kubeconfig: Path) -> AsyncIterator[Election]:
    monitor = Exclusivity()
    watcher = asyncio.create_task(monitor.watch(), name="ptc-test-exclusivity")
    e = Election(api_server, kubeconfig, monitor)
    try:
        yield e
    finally:
        for c in monitor.candidates:
            c.elector.stop()
        tasks = [c.task for c in monitor.candidates if c.task is not None]
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        for kube in e.kubes:
            await kube.close()
    monitor.assert_ok()


async def leader_of(*candidates: Candidate, limit: float = 3.0) -> Candidate:
    """Wait (bounded) until one of ``candidates`` leads; that one."""
    await eventually(lambda: any(c.elector.is_leader() for c in candidates), limit)
    return next(c for c in candidates if c.elector.is_leader())


# --- acquiring and holding -----------------------------------------------------------------


async def test_first_candidate_creates_the_lease_and_keeps_renewing(election: Election) -> None:
    with capture_logs() as logs:
        a = await election.candidate("a")
        await asyncio.wait_for(a.elector.wait_leader(), 2.0)

    spec = election.lease()
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]
    assert (a.elector.holder, a.elector.transitions) == ("a", 0)
    acquired = [e for e in logs if e["event"] == "leadership acquired"]
    assert acquired == [
        {
            "event": "leadership acquired",
            "log_level": "info",
            "identity": "a",
            "lease": f"{NS}/{LEASE}",
            "holder": "a",
            "transitions": 0,
        }
    ]

    first_renew = spec["renewTime"]
    await eventually(lambda: election.lease()["renewTime"] != first_renew, 1.0)
    # several renew periods later: still leader, same term, one reported change
    await eventually(lambda: len(a.leases.writes) >= 5, 2.0)
    assert a.elector.is_leader()
    assert election.lease()["acquireTime"] == spec["acquireTime"]
    assert election.lease()["leaseTransitions"] == 0
    assert a.leadership() == [True]
    # the deadline runs from when the last renewal was *sent*: the server may have applied it
    # at any instant before answering, so the answer's arrival would be too late a start
    deadline = a.elector.deadline
    assert deadline is not None
    sent = a.leases.last_write_by("a")
    assert sent + RENEW_DEADLINE - 0.01 <= deadline <= sent + RENEW_DEADLINE


async def test_two_candidates_never_lead_at_the_same_time(election: Election) -> None:
    a, b = await election.candidate("a"), await election.candidate("b")
    leader = await leader_of(a, b)
    follower = b if leader is a else a

    # a few lease durations of both running; the monitor samples throughout
    await asyncio.sleep(3 * LEASE_DURATION)

    election.monitor.assert_ok()
    assert election.monitor.samples > 100
    assert leader.elector.is_leader() and not follower.elector.is_leader()
    assert leader.leadership() == [True]
    assert follower.leadership() == []
    assert follower.elector.holder == leader.name
    assert follower.changes[-1][1:] == (False, leader.name)
    assert election.lease()["holderIdentity"] == leader.name
    assert election.lease()["leaseTransitions"] == 0


async def test_a_foreign_holder_is_judged_by_our_clock_not_its_timestamps(
    election: Election, api_server: ApiServer
) -> None:
    # renewTime an hour old: a clock-skewed holder, or a stale record. Neither lets us take the
    # lease before it has been unchanged for lease_duration on our own clock.
    old = datetime.now(UTC) - timedelta(hours=1)
    skewed = old.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    api_server.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NS},
            "spec": {
                "holderIdentity": "ghost",
                "leaseDurationSeconds": 1,
                "acquireTime": skewed,
                "renewTime": skewed,
                "leaseTransitions": 4,
            },
        }
    )
    a = await election.candidate("a", start=False)

    async def ghost_renews(until: float) -> float:
        """Renew as the ghost every 0.3 s (its clock still an hour behind); the last time."""
        n = 0
        while True:
            n += 1
            renew = (old + timedelta(milliseconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            api_server.patch("Lease", LEASE, {"spec": {"renewTime": renew}}, NS)
            last = time.monotonic()
            if last >= until:
                return last
            await asyncio.sleep(0.3)

    # a live holder keeps the lease, however old its renewTime looks
    started = time.monotonic()
    election.start(a)
    ghost_last = await ghost_renews(started + 2 * LEASE_DURATION)
    assert a.leadership() == []
    assert a.elector.holder == "ghost"

    # once it stops, the lease is ours one lease_duration after we saw its last change
    await leader_of(a, limit=LEASE_DURATION + SLACK)
    assert a.gained_at() >= ghost_last + LEASE_DURATION - 0.01
    assert a.gained_at() <= ghost_last + LEASE_DURATION + SLACK
    spec = election.lease()
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("a", 5)
    assert a.elector.transitions == 5


# --- hand-over -----------------------------------------------------------------------------


async def test_a_stopped_leader_is_replaced_once_its_lease_expires(election: Election) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    b = await election.candidate("b")
    await eventually(lambda: b.elector.holder == "a")

    a.elector.stop()  # no release: like a crash, the lease must expire
    stopped = time.monotonic()
    # no longer leader from the call on, before run() has even had a chance to end
    assert not a.elector.is_leader()
    assert a.leadership() == [True, False]
    await election.stopped(a)
    assert election.lease()["holderIdentity"] == "a"

    await leader_of(b, limit=LEASE_DURATION + SLACK)
    # never before a's last renewal could have expired, and soon after it did
    assert b.gained_at() >= a.leases.last_write_by("a") + LEASE_DURATION
    assert b.gained_at() - stopped <= LEASE_DURATION + SLACK
    spec = election.lease()
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    assert spec["acquireTime"] == spec["renewTime"]  # a new term
    assert (b.elector.holder, b.elector.transitions) == ("b", 1)


async def test_release_hands_over_at_once_and_counts_transitions(election: Election) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    b = await election.candidate("b")
    await eventually(lambda: b.elector.holder == "a")

    assert await a.elector.release()
    released = time.monotonic()
    # a stopped acting before it wrote the release
    release_write = a.leases.writes[-1]
    assert release_write[1] is None
    assert a.lost_at() <= release_write[0]
    assert not a.elector.is_leader()

    await leader_of(b, limit=LEASE_DURATION)
    assert b.gained_at() - released < LEASE_DURATION / 2
    spec = election.lease()
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)

    # and back: b releases, a fresh candidate takes over; each hand-over is one transition
    c = await election.candidate("c")
    await eventually(lambda: c.elector.holder == "b")
    assert await b.elector.release()
    await leader_of(c, limit=LEASE_DURATION / 2)
    assert election.lease()["leaseTransitions"] == 2
    assert c.elector.transitions == 2
    assert not await a.elector.release()  # no longer the holder: nothing to release


async def test_release_when_not_leader_leaves_the_lease_alone(election: Election) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    b = await election.candidate("b")
    await eventually(lambda: b.elector.holder == "a")
    before = election.lease()

    assert not await b.elector.release()
    assert election.lease() == before
    assert a.elector.is_leader()


async def test_a_deleted_lease_is_not_a_free_lease(
    election: Election, api_server: ApiServer
) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    b = await election.candidate("b")
    await eventually(lambda: b.elector.holder == "a")
    b_calls = b.leases.calls

    # someone deletes the Lease and b's next read finds nothing: a may still be acting, so b
    # waits out a's term as it last saw it instead of creating the Lease at once
    a.leases.mode = "error"  # and a cannot recreate it
    api_server.delete("Lease", LEASE, NS)
    deleted = time.monotonic()
    await eventually(lambda: b.leases.calls > b_calls + 2)
    assert not b.elector.is_leader()

    await leader_of(b, limit=LEASE_DURATION + SLACK)
    assert b.gained_at() >= a.leases.last_write_by("a") + LEASE_DURATION
    assert b.gained_at() - deleted <= LEASE_DURATION + SLACK
    spec = election.lease()
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 0)  # a new object


async def test_a_leader_recreates_a_lease_deleted_under_it(
    election: Election, api_server: ApiServer
) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    b = await election.candidate("b")
    await eventually(lambda: b.elector.holder == "a")

    api_server.delete("Lease", LEASE, NS)
    await eventually(lambda: election.api.list("Lease") != [], 1.0)
    assert election.lease()["holderIdentity"] == "a"
    await asyncio.sleep(LEASE_DURATION)
    assert a.elector.is_leader() and a.leadership() == [True]


# --- fencing by time -----------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["error", "hang"])
async def test_a_cut_off_leader_steps_down_before_its_lease_can_expire(
    election: Election, fault: Literal["error", "hang"]
) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    b = await election.candidate("b")
    await eventually(lambda: b.elector.holder == "a")

    a.leases.mode = fault  # a alone loses the API; b still reaches it
    cut = time.monotonic()
    await eventually(lambda: not a.elector.is_leader(), RENEW_DEADLINE + 0.2)
    await eventually(lambda: a.leadership() == [True, False], 0.2)
    last_renew = a.leases.last_write_by("a")
    stepped_down = a.lost_at()
    # fenced by its own clock: at the renew deadline, well before b may take the lease
    assert stepped_down <= last_renew + RENEW_DEADLINE + 0.05
    assert stepped_down < last_renew + LEASE_DURATION
    assert stepped_down - cut <= RENEW_DEADLINE + 0.05

    await leader_of(b, limit=LEASE_DURATION + SLACK)
    assert b.gained_at() >= last_renew + LEASE_DURATION
    assert b.gained_at() > stepped_down

    # the API comes back: a follows b, and does not take the lease back
    a.leases.mode = "ok"
    await eventually(lambda: a.elector.holder == "b", 1.0)
    await asyncio.sleep(2 * RETRY_PERIOD)
    assert b.elector.is_leader() and not a.elector.is_leader()
    assert election.lease()["leaseTransitions"] == 1


async def test_slow_lease_writes_on_the_server_make_the_leader_step_down(
    election: Election, api_server: ApiServer
) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    b = await election.candidate("b")
    await eventually(lambda: b.elector.holder == "a")

    # every Lease write now takes longer than the renew deadline: nobody can hold the lease
    api_server.set_faults(latency=1.0, verbs={"update", "create"}, resources={"leases"})
    await eventually(lambda: not a.elector.is_leader(), RENEW_DEADLINE + 0.2)
    # is_leader() turns False by the clock alone; the loop reports it when its call times out
    await eventually(lambda: a.leadership() == [True, False], 0.2)
    assert a.lost_at() <= a.leases.last_write_by("a") + RENEW_DEADLINE + 0.05
    await asyncio.sleep(LEASE_DURATION + SLACK)
    assert not a.elector.is_leader() and not b.elector.is_leader()

    api_server.clear_faults()
    await leader_of(a, b, limit=2 * LEASE_DURATION + SLACK)


async def test_a_paused_leader_is_no_leader_the_instant_it_resumes(election: Election) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    calls = a.leases.calls

    # SIGSTOP/SIGCONT as the process sees it: its monotonic clock jumped past the deadline
    a.clock.offset += RENEW_DEADLINE + 0.1
    assert not a.elector.is_leader()  # no await since the jump: no API call could have run
    assert a.leases.calls == calls

    # the loop notices, steps down, and (the lease still naming a, nobody else around)
    # acquires a new lease term from a fresh renewal
    await eventually(lambda: a.leadership() == [True, False, True], 1.0)
    assert a.elector.is_leader()
    assert election.lease()["leaseTransitions"] == 0


async def test_time_left_fences_writes_to_the_renew_deadline(election: Election) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    left = a.elector.time_left()
    assert left is not None and 0 < left <= RENEW_DEADLINE
    # Frozen past the deadline: no time left at once, before any renewal could run.
    a.clock.offset += RENEW_DEADLINE + 0.1
    assert a.elector.time_left() is None
    b = await election.candidate("b", start=False)
    assert b.elector.time_left() is None  # never led


# --- lifecycle -----------------------------------------------------------------------------


async def test_stop_cuts_a_hanging_call_short(election: Election) -> None:
    a = await election.candidate("a", start=False)
    a.leases.mode = "hang"
    election.start(a)
    waiter = asyncio.create_task(a.elector.wait_leader(), name="ptc-test-wait-leader")
    await eventually(lambda: a.leases.calls == 1)

    begun = time.monotonic()
    await election.stopped(a)
    assert time.monotonic() - begun < 0.2
    with pytest.raises(ElectorStopped):
        await waiter
    with pytest.raises(ElectorStopped):
        await a.elector.wait_leader()


async def test_wait_leader_wakes_when_leadership_comes(election: Election) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    b = await election.candidate("b")
    waiter = asyncio.create_task(b.elector.wait_leader(), name="ptc-test-wait-leader")
    await eventually(lambda: b.elector.holder == "a")
    assert not waiter.done()

    assert await a.elector.release()
    await asyncio.wait_for(waiter, LEASE_DURATION)
    assert b.elector.is_leader()


async def test_a_failing_on_change_callback_does_not_stop_the_election(
    election: Election,
) -> None:
    def broken(leading: bool, holder: str | None) -> None:
        raise RuntimeError("callback bug")

    with capture_logs() as logs:
        a = await election.candidate("a", on_change=broken)
        await leader_of(a)
        await eventually(lambda: len(a.leases.writes) >= 3, 1.0)
    assert a.elector.is_leader()
    assert any(e["event"] == "leadership change callback failed" for e in logs)


async def test_run_twice_is_refused(election: Election) -> None:
    a = await election.candidate("a")
    await leader_of(a)
    with pytest.raises(RuntimeError, match="already running"):
        await a.elector.run()
