"""A leader frozen (SIGSTOP) mid-write lands nothing after the standby took over (issue 12).

Two `ptc run` processes share a rollout. Each round, the sandbox API server holds the leader's
next write to the rollout's objects once it has fully arrived (the write gate); the test then
freezes the leader, waits until the standby has taken the Lease and written something itself,
resumes the old leader and lets the held write go on — the server applies it as a real one
would, whether or not its client still waits. Rounds alternate the roles, at seeded writes
across the rollout. From the server's write audit (who, what, on which precondition, the commit
order): no write of a deposed leader is applied once its successor has claimed the object (until
it takes the Lease back; see late_writes for what "claimed" means and why a write landing
between the Lease and the claim is safe); every write that acts on the rollout carried a
precondition; the rollout completes with each step reached once, in order. The negative
control runs the same with a controller whose leadership never ends (tests/e2e/unfenced_ptc.py)
and sees its late write.

The "late" rounds hold a write whose object the successor has not written but for its claim: a
scale of the canary, and a history ConfigMap write. The successor's next write after its claim
is held too, so when the old leader's write is let go the successor has claimed and done
nothing else: only the claim can refuse it. The same round with a controller whose claim writes
the Service only (tests/e2e/unclaimed_ptc.py, the claim before issue 12's last part) sees the
late scale land.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.sandbox.audit import Arrival, Audit, AuditEntry
from tests.e2e.harness import CANARY, World, config_document, no_analysis, sandbox_world
from tests.e2e.test_ha import kubeconfig_for
from tests.e2e.test_process import controller_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Every object a rollout writes (what acts on traffic, and the decision history). Leases (the
# election itself) and Events (records) are not fenced.
ROLLOUT_OBJECTS = frozenset({"services", "deployments", "deployments/scale", "configmaps"})
LEASES = frozenset({"leases"})
SERVICES = frozenset({"services"})
USERS = ("ctl-a", "ctl-b")


@dataclass(frozen=True)
class Round:
    """One freeze: who was deposed, the write held meanwhile, and how it was decided."""

    deposed: str
    successor: str
    held: Arrival
    entry: AuditEntry


def acquired(audit: Audit, user: str, after: int) -> AuditEntry | None:
    """The first Lease write of `user` applied after audit seq `after`: it took the Lease."""
    return next(
        (e for e in audit.writes(user=user, resources=LEASES) if e.seq > after and e.applied),
        None,
    )


def obj(e: AuditEntry | Arrival) -> tuple[str, str | None]:
    """The object a write addressed (a Deployment and its scale subresource are one)."""
    return e.resource.split("/")[0], e.name


def deposed_terms(audit: Audit, users: tuple[str, str]) -> list[tuple[str, AuditEntry, int]]:
    """(deposed user, its successor's Lease acquisition, audit seq when it took the Lease back)."""
    terms = []
    for took in audit.writes(resources=LEASES):
        deposed = next((u for u in users if u != took.user), None)
        if not took.applied or deposed is None:
            continue
        back = acquired(audit, deposed, took.seq)
        terms.append((deposed, took, back.seq if back is not None else 1 << 62))
    return terms


def claimed(audit: Audit, successor: str, took: AuditEntry) -> int | None:
    """Audit seq of the successor's first Service write after `took`: its claim is complete
    (the Service is the claim's last write; every other object of the rollout was claimed)."""
    return next(
        (
            e.seq
            for e in audit.writes(user=successor, resources=SERVICES)
            if e.applied and e.seq > took.seq
        ),
        None,
    )


def late_writes(audit: Audit, users: tuple[str, str]) -> list[AuditEntry]:
    """Writes that must not land: a deposed leader's, applied after its successor claimed them.

    An object of the rollout is claimed from the successor's first write to it after it took the
    Lease, or from the end of its claim (its Service write, the claim's last), whichever is
    first: Kubernetes has no precondition across objects, so the claim writes to each one (see
    the README's "Fencing"). A deposed write applied between the successor's Lease and its claim
    is not late: it was sent in its term (the process froze between its last fence check and
    the send) and is ordered before anything the successor does, which decides on it as on a
    write made just before a crash — the successor's state claim is conditional like every
    write that acts (:func:`blind_writes`), so one prepared before a deposed state write landed
    is refused and made again on what that wrote.
    """
    late: list[AuditEntry] = []
    for deposed, took, until in deposed_terms(audit, users):
        successor = took.user
        done = claimed(audit, successor, took)
        for e in audit.writes(user=deposed, resources=ROLLOUT_OBJECTS):
            if not e.applied or not took.seq < e.seq < until:
                continue
            successor_wrote_it = any(
                w.applied and obj(w) == obj(e) and took.seq < w.seq < e.seq
                for w in audit.writes(user=successor, resources=ROLLOUT_OBJECTS)
            )
            if successor_wrote_it or (done is not None and done < e.seq):
                late.append(e)
    return sorted(set(late), key=lambda e: e.seq)


# The writes that act on a rollout or record it, each made on the version its writer saw. The
# claim's annotations (a patch of the Deployment or the ConfigMap itself) are blind on purpose:
# they move the resourceVersion whatever the object holds; a create fails if the object exists.
CONDITIONAL = frozenset(
    {
        ("patch", "services"),
        ("patch", "deployments/scale"),
        ("update", "deployments/scale"),
        ("update", "configmaps"),
        ("delete", "deployments"),
    }
)


def blind_writes(audit: Audit, users: tuple[str, str]) -> list[AuditEntry]:
    """The controllers' writes of the kinds above that carried no precondition."""
    return [
        e
        for e in audit.entries
        if e.user in users and (e.verb, e.resource) in CONDITIONAL and e.condition is None
    ]


async def poll(world: World, check: object, timeout: float, what: str) -> None:
    """Wait (driven by the store's changes) until `check()` is true."""
    assert callable(check)
    await world.wait_for(lambda _: bool(check()), timeout, what)


async def freeze_round(
    world: World,
    procs: dict[str, asyncio.subprocess.Process],
    leader: str,
    kind: str,
    release_before_resume: bool,
) -> Round:
    """Hold a write of `leader`'s, SIGSTOP it, let the standby take over and act, SIGCONT,
    then let the held write be applied.

    `kind` "scale": the leader's next scale of the canary; "state": its next Service patch
    after that (the state write that records the scale).
    """
    audit = world.sandbox.api.audit
    standby = next(u for u in procs if u != leader)
    scaled = [False]

    def matches(w: Arrival) -> bool:
        if w.user != leader:
            return False
        if w.resource == "deployments/scale" and w.name == CANARY:
            scaled[0] = True
            return kind == "scale"
        return kind == "state" and scaled[0] and w.resource == "services"

    held = world.sandbox.api.gate.arm(matches)
    arrival = await held.wait_arrived(90)
    procs[leader].send_signal(signal.SIGSTOP)
    frozen_at = len(audit.entries)
    try:
        await poll(world, lambda: acquired(audit, standby, frozen_at), 30, "the standby's Lease")
        took = acquired(audit, standby, frozen_at)
        assert took is not None
        # A scale waits for the standby's own write of that Deployment (its claim's annotation
        # or a scale: the Deployment's precondition is the fence); a state write for the
        # standby's claim to be complete (its last write is the Service's).
        await poll(
            world,
            lambda: (
                claimed(audit, standby, took) is not None
                if kind == "state"
                else any(
                    e.applied and e.seq > took.seq and obj(e) == obj(arrival)
                    for e in audit.writes(user=standby, resources=ROLLOUT_OBJECTS)
                )
            ),
            60,
            "the standby to act",
        )
        if release_before_resume:
            held.release()
    finally:
        procs[leader].send_signal(signal.SIGCONT)
    held.release()
    await poll(world, lambda: any(e.held for e in audit.entries[frozen_at:]), 30, "held write")
    entry = next(e for e in audit.entries[frozen_at:] if e.held)
    return Round(leader, standby, arrival, entry)


async def late_round(
    world: World, procs: dict[str, asyncio.subprocess.Process], leader: str, kind: str
) -> Round:
    """Hold `leader`'s next write of `kind` ("stale-scale": a scale of the canary; "history":
    a write of the history ConfigMap), SIGSTOP it, let the standby take over and claim, and
    hold the standby's next write (so it has written nothing but its claim); SIGCONT, let the
    old leader's write be applied, then the standby's."""
    audit = world.sandbox.api.audit
    gate = world.sandbox.api.gate
    standby = next(u for u in procs if u != leader)

    def matches(w: Arrival) -> bool:
        if w.user != leader:
            return False
        if kind == "history":
            return w.resource == "configmaps"
        return w.resource == "deployments/scale" and w.name == CANARY

    held = gate.arm(matches)
    arrival = await held.wait_arrived(90)
    procs[leader].send_signal(signal.SIGSTOP)
    frozen_at = len(audit.entries)
    service_writes = [0]

    def after_claim(w: Arrival) -> bool:
        """The standby's first write after its claim: a scale, or a Service write after the
        claim's (which is the claim's last)."""
        if w.user != standby:
            return False
        if w.resource == "services":
            service_writes[0] += 1
            return service_writes[0] > 1
        return w.resource == "deployments/scale"

    successor = gate.arm(after_claim)
    try:
        await poll(world, lambda: acquired(audit, standby, frozen_at), 30, "the standby's Lease")
        await successor.wait_arrived(60)  # its claim is complete: it is on to what it decided
    finally:
        procs[leader].send_signal(signal.SIGCONT)
        held.release()
    await poll(world, lambda: any(e.held for e in audit.entries[frozen_at:]), 30, "held write")
    entry = next(e for e in audit.entries[frozen_at:] if e.held)
    successor.release()
    return Round(leader, standby, arrival, entry)


@asynccontextmanager
async def two_controllers(
    tmp_path: Path, module: str = "controller.ops.cli"
) -> AsyncIterator[tuple[World, dict[str, asyncio.subprocess.Process], str]]:
    """Two `ptc run` processes (`module`) on a time-judged rollout; yields the first leader."""
    steps = [{"weight": w, "hold": "2s"} for w in (25, 50, 75)]
    spec = no_analysis(steps=steps, flip={"bake": "2s"})
    async with sandbox_world(tmp_path, prometheus=False) as world:
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps(config_document(world, spec)))
        kubeconfigs = {u: kubeconfig_for(world, tmp_path, u) for u in USERS}
        log = tmp_path / "controllers.log"
        async with (
            controller_process(
                world, config, log, "ctl-a", kubeconfigs["ctl-a"], module=module
            ) as proc_a,
            controller_process(
                world, config, log, "ctl-b", kubeconfigs["ctl-b"], module=module
            ) as proc_b,
        ):
            state = await world.wait_for(
                lambda s: s is not None and s.get("writer") in USERS, 120, "a leader's first write"
            )
            assert state is not None
            yield world, {"ctl-a": proc_a, "ctl-b": proc_b}, state["writer"]


async def test_a_frozen_leader_lands_no_write_after_the_standby_took_over(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261202)
    async with two_controllers(tmp_path) as (world, procs, leader):
        done: list[Round] = []
        kinds = ["scale", "state", "stale-scale", "history"]
        rng.shuffle(kinds)
        for kind in kinds:  # alternating roles, at each of the canary's four scale-ups
            if kind in ("stale-scale", "history"):
                done.append(await late_round(world, procs, leader, kind))
            else:
                done.append(await freeze_round(world, procs, leader, kind, rng.random() < 0.5))
            leader = done[-1].successor
        state = await world.wait_phase("completed", timeout=120)
    audit = world.sandbox.api.audit
    held = [(r.held.verb, r.held.resource, r.entry.code) for r in done]
    late = late_writes(audit, USERS)
    assert not late, f"deposed leaders' writes applied: {late}; held writes: {held}"
    assert not blind_writes(audit, USERS), blind_writes(audit, USERS)
    assert all(not r.entry.applied for r in done), held  # each refused by its precondition
    resources = Counter(r.held.resource for r in done)
    assert resources == {"services": 1, "deployments/scale": 2, "configmaps": 1}, held
    history = state["history"]
    order = [h["step"] for h in history if h["decision"] == "step-reached"]
    assert order == [0, 1, 2], order  # none repeated, none skipped, in order
    assert Counter(h["decision"] for h in history)["flipped"] == 1
    assert not world.monitor.violations, world.monitor.violations


async def test_negative_control_an_unfenced_leader_is_caught_writing_late(tmp_path: Path) -> None:
    """The same freeze with controllers whose leadership never ends: the audit sees it."""
    async with two_controllers(tmp_path, module="tests.e2e.unfenced_ptc") as (world, procs, leader):
        await freeze_round(world, procs, leader, "state", False)
        audit = world.sandbox.api.audit
        await poll(world, lambda: late_writes(audit, USERS), 60, "a deposed leader's late write")


async def test_negative_control_a_claim_of_the_service_only_lets_a_late_scale_land(
    tmp_path: Path,
) -> None:
    """The late scale round with the claim as it was before: the Service only. The held scale
    of the canary (which the successor had not written) lands, and the audit calls it late."""
    async with two_controllers(tmp_path, module="tests.e2e.unclaimed_ptc") as (
        world,
        procs,
        leader,
    ):
        done = await late_round(world, procs, leader, "stale-scale")
    assert done.entry.applied, done
    assert done.entry in late_writes(world.sandbox.api.audit, USERS)


async def freeze_at(
    world: World, procs: dict[str, asyncio.subprocess.Process], leader: str, delay: float
) -> str:
    """Freeze `leader` `delay` s after its next write, until the standby took the Lease; SIGCONT.

    Returns once the resumed process has read the Lease again (so it knows); the new leader.
    """
    api = world.sandbox.api
    audit = api.audit
    standby = next(u for u in USERS if u != leader)
    start = len(audit.entries)
    await poll(
        world,
        lambda: any(
            e.user == leader and e.resource in ROLLOUT_OBJECTS for e in audit.entries[start:]
        ),
        90,
        "a write of the leader's",
    )
    await asyncio.sleep(delay)  # a moment among the writes that follow
    procs[leader].send_signal(signal.SIGSTOP)
    frozen_at = len(audit.entries)
    try:
        await poll(world, lambda: acquired(audit, standby, frozen_at), 30, "the standby's Lease")
    finally:
        procs[leader].send_signal(signal.SIGCONT)
    reads = api.count(verb="get", resource="leases", user=leader)
    await poll(
        world,
        lambda: api.count(verb="get", resource="leases", user=leader) >= reads + 2,
        30,
        "the old leader to read the Lease",
    )
    return standby


async def test_a_leader_frozen_at_random_moments_writes_nothing_once_deposed(
    tmp_path: Path,
) -> None:
    """No gate: the leader is frozen at seeded moments among its own writes. What stops it after
    SIGCONT is its own fence (its time left, read before each attempt and again right before
    the send), or, when it froze after that last check, the successor's claim: a write that
    lands before the claim is decided on by the successor (every write is conditional)."""
    rng = random.Random(1202)
    async with two_controllers(tmp_path) as (world, procs, leader):
        for _ in range(3):
            leader = await freeze_at(world, procs, leader, rng.uniform(0.0, 0.2))
        state = await world.wait_phase("completed", timeout=120)
    audit = world.sandbox.api.audit
    late = late_writes(audit, USERS)
    assert not late, f"deposed leaders' writes applied: {late}"
    assert not blind_writes(audit, USERS), blind_writes(audit, USERS)
    order = [h["step"] for h in state["history"] if h["decision"] == "step-reached"]
    assert order == [0, 1, 2], order
    assert not world.monitor.violations, world.monitor.violations
