"""Sharded leadership: one Lease per shard, a replica leads its fair share and stands by.

Each shard ``i`` has its own :class:`~controller.shell.leader.LeaderElector` on the Lease
``<lease-name>-shard-<i>``, with the same protocol and fencing as the single Lease (a write for
a rollout is sent only within :meth:`ShardManager.time_left` of *its* shard). Every replica runs
an elector for every shard, so it watches each Lease's expiry on its own clock; whether it
*tries* to take a free one is gated by :func:`controller.core.sharding.plan_shards`.

Which replicas are alive comes from a heartbeat ConfigMap, ``<lease-name>-members``: each
replica writes its key (its identity, the value the time of the beat) every retry period. A key
whose value has not changed for a lease duration, on our own clock, is a dead replica (its Leases
expire on the same scale); after three lease durations anyone removes it. Standbys, which lead
no Lease, are counted this way too: that is what lets a replica that holds more than its fair
share notice a newcomer and hand shards off.

A hand-off is a clean release: the daemon stops the shard's reconcilers (each finishes its
action in flight, still fenced by the Lease it holds), then the Lease is released with an empty
holder, so the least loaded replica takes it at its next attempt, without waiting for expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from controller.core.sharding import MEMBER_KEY, ShardPlan, ShardView, plan_shards, shard_lease_name
from controller.shell.history import HistoryKube
from controller.shell.kube import Conflict, KubeError, NotFound
from controller.shell.leader import JITTER, LeaderElector
from controller.shell.lease import LEASE_TIMINGS, LeaderSettings, LeaseApi

log = structlog.get_logger("ptc.shards")

FORGET_AFTER = 3  # lease durations without a beat, then a member's key is removed

# `ptc run`'s Lease timings: (lease duration, renew deadline, retry period). One Lease keeps
# client-go's 15 s / 10 s / 2 s. Sharded (more than one shard), the default is 30 s / 20 s:
# sharding is what one turns to when a fleet loads the controller and its API server, and at
# N=2000 on 4 shards every replica's renewals stalled together for 6-8 s about once a minute
# and all shard Leases were lost (each loss stops and restarts a shard's reconcilers, whose
# claims are more writes to the same loaded server). 20 s rides out such stalls; the price is
# that a dead replica's shards move within 30 s instead of 15 s (README "Sharding").
SHARDED_LEASE_TIMINGS = (timedelta(seconds=30), timedelta(seconds=20), timedelta(seconds=2))


def lease_timings(
    shards: int,
    lease_duration: timedelta | None = None,
    renew_deadline: timedelta | None = None,
    retry_period: timedelta | None = None,
) -> tuple[timedelta, timedelta, timedelta]:
    """The Lease timings for `shards` (0: one Lease), the ones given kept as they are.

    The sharded defaults apply only when none is given: a timing set by hand is completed
    with the single Lease's defaults, so ``--lease-duration 12s`` means what it always did.
    """
    given = (lease_duration, renew_deadline, retry_period)
    base = SHARDED_LEASE_TIMINGS if shards > 1 and given == (None, None, None) else LEASE_TIMINGS
    lease, renew, retry = (g if g is not None else b for g, b in zip(given, base, strict=True))
    return lease, renew, retry


class ShardApi(LeaseApi, HistoryKube, Protocol):
    """The Lease calls, plus the two ConfigMap calls (the heartbeat ConfigMap)."""


@dataclass(frozen=True, kw_only=True)
class ShardSettings:
    """How many shards, whose Leases, as whom; the timings are the single Lease's."""

    namespace: str
    lease_name: str
    shards: int
    identity: str
    lease_duration: timedelta = LEASE_TIMINGS[0]
    renew_deadline: timedelta = LEASE_TIMINGS[1]
    retry_period: timedelta = LEASE_TIMINGS[2]

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"sharding: shards must be at least 1, got {self.shards}")
        if not MEMBER_KEY.match(self.identity):
            raise ValueError(
                f"sharding: identity {self.identity!r} must consist of letters, digits, '-', "
                "'_' or '.' (it is a key of the members ConfigMap); set --identity"
            )

    def lease(self, shard: int) -> LeaderSettings:
        """The elector settings of one shard's Lease."""
        return LeaderSettings(
            namespace=self.namespace,
            name=shard_lease_name(self.lease_name, shard),
            identity=self.identity,
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
        )

    @property
    def members_name(self) -> str:
        """The heartbeat ConfigMap."""
        return f"{self.lease_name}-members"


ShardChange = Callable[[int, bool, str | None], None]
Handoff = Callable[[int], Awaitable[None]]


class ShardManager:
    """Runs one elector per shard and the heartbeat; gates and hands off by the plan."""

    def __init__(
        self,
        api: ShardApi,
        settings: ShardSettings,
        *,
        on_change: ShardChange,
        before_handoff: Handoff,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self.settings = settings
        self._on_change = on_change
        self._before_handoff = before_handoff
        self._clock = clock
        self._wall_clock = wall_clock
        self._acquire: frozenset[int] = frozenset()  # closed until the first plan
        self.plan: ShardPlan | None = None
        self.members: frozenset[str] = frozenset({settings.identity})
        self._seen: dict[str, tuple[str, float]] = {}  # member -> (last beat, first seen at)
        self._free_since: dict[int, float] = {}
        self._stopping = False
        self._stop_event = asyncio.Event()
        self.electors = [self._elector(i) for i in range(settings.shards)]
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._log = log.bind(identity=settings.identity, shards=settings.shards)

    def _elector(self, shard: int) -> LeaderElector:
        return LeaderElector(
            self._api,
            self.settings.lease(shard),
            clock=self._clock,
            wall_clock=self._wall_clock,
            on_change=lambda leading, holder: self._on_change(shard, leading, holder),
            may_acquire=lambda: shard in self._acquire,
        )

    # --- what the daemon asks ----------------------------------------------------------------

    def time_left(self, shard: int) -> float | None:
        """Seconds this replica may still write for rollouts of ``shard`` (None: it may not)."""
        return self.electors[shard].time_left()

    def is_leader(self, shard: int) -> bool:
        """Whether this replica leads ``shard`` now."""
        return self.electors[shard].is_leader()

    def led(self) -> list[int]:
        """The shards this replica leads now."""
        return [i for i, e in enumerate(self.electors) if e.is_leader()]

    def holders(self) -> list[str | None]:
        """Each shard's live holder as this replica sees it (None: free)."""
        return [e.live_holder for e in self.electors]

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Beat, plan and gate each retry period until :meth:`stop`."""
        for i in range(len(self.electors)):
            self._start_election(i)
        period = self.settings.retry_period.total_seconds()
        await self._beat()
        # One period to hear from replicas starting alongside: the first plan counts them.
        await self._pause(period)
        try:
            while not self._stopping:
                await self._beat()
                await self._replan()
                await self._pause(period * (1 + JITTER * random.random()))
        finally:
            self.stop()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def stop(self) -> None:
        """Stop contending for every shard (leadership ends now; Leases left to expire)."""
        self._stopping = True
        self._acquire = frozenset()
        self._stop_event.set()
        for elector in self.electors:
            elector.stop()

    async def release_all(self) -> None:
        """Stop, release every Lease we hold and leave the heartbeat: the others take over now.

        Leaving matters as much as releasing: until they stop counting us, the others would
        keep to a fair share that still includes us.
        """
        self._stopping = True
        self._acquire = frozenset()
        self._stop_event.set()
        await asyncio.gather(*(e.release() for e in self.electors), return_exceptions=True)
        await self._leave()

    async def _leave(self) -> None:
        s = self.settings
        try:
            async with asyncio.timeout(s.renew_deadline.total_seconds()):
                for _ in range(3):  # another replica's beat may come between read and write
                    try:
                        data, version = await self._api.get_configmap(s.namespace, s.members_name)
                        if s.identity not in data:
                            return
                        del data[s.identity]
                        await self._api.write_configmap(
                            s.namespace, s.members_name, data, resource_version=version
                        )
                        return
                    except Conflict:
                        continue
        except (KubeError, TimeoutError) as e:
            self._log.warning("leaving the heartbeat failed", error=str(e) or type(e).__name__)

    # --- the loop ----------------------------------------------------------------------------

    async def _replan(self) -> None:
        now = self._clock()
        holders = tuple(self.holders())
        lease = self.settings.lease_duration.total_seconds()
        for i, holder in enumerate(holders):
            if holder is None:
                self._free_since.setdefault(i, now)
            else:
                self._free_since.pop(i, None)
        late = frozenset(i for i, t in self._free_since.items() if now - t > lease)
        plan = plan_shards(ShardView(self.settings.identity, holders, self.members, late))
        if plan != self.plan:
            self._log.info(
                "shards planned",
                led=[i for i, h in enumerate(holders) if h == self.settings.identity],
                acquire=sorted(plan.acquire),
                release=sorted(plan.release),
                fair_share=plan.fair_share,
                members=sorted(self.members),
            )
        self.plan = plan
        self._acquire = plan.acquire
        # One hand-off per period: the plan is made again on what follows.
        for shard in sorted(plan.release)[:1]:
            await self._handoff(shard)

    async def _handoff(self, shard: int) -> None:
        elector = self.electors[shard]
        if not elector.is_leader() or self._stopping:
            return
        self._log.info("handing the shard off", shard=shard, lease=elector.settings.name)
        await self._before_handoff(shard)
        await elector.release()
        await asyncio.gather(self._tasks[shard], return_exceptions=True)
        if self._stopping:
            return
        # A stopped elector does not run again: a fresh one stands by for the shard.
        self.electors[shard] = self._elector(shard)
        self._start_election(shard)

    def _start_election(self, shard: int) -> None:
        task = asyncio.create_task(self.electors[shard].run(), name=f"shard-election:{shard}")
        self._tasks[shard] = task
        task.add_done_callback(lambda t: self._election_ended(shard, t))

    def _election_ended(self, shard: int, task: asyncio.Task[None]) -> None:
        """An elector that crashed is logged and replaced, so the shard is not left unled."""
        if task.cancelled() or task.exception() is None or self._stopping:
            return
        if self._tasks.get(shard) is not task:
            return  # already replaced (a hand-off)
        self._log.error(
            "shard election crashed; a fresh elector stands by",
            shard=shard,
            exc_info=task.exception(),
        )
        self.electors[shard] = self._elector(shard)
        self._start_election(shard)

    async def _beat(self) -> None:
        """Write our heartbeat, read the others'; any failure is logged and tried next period."""
        s = self.settings
        try:
            async with asyncio.timeout(s.renew_deadline.total_seconds()):
                try:
                    data, version = await self._api.get_configmap(s.namespace, s.members_name)
                except NotFound:
                    data, version = {}, ""
                self._observe(data)
                data = {k: v for k, v in data.items() if not self._forgotten(k)}
                data[s.identity] = self._wall_clock().isoformat()
                await self._api.write_configmap(
                    s.namespace,
                    s.members_name,
                    data,
                    resource_version=version or None,
                    labels={"app.kubernetes.io/managed-by": "ptc", "ptc.dev/role": "members"},
                )
        except Conflict:
            self._log.debug("heartbeat conflict")  # another replica beat first
        except (KubeError, TimeoutError) as e:
            self._log.warning("heartbeat failed", error=str(e) or type(e).__name__)

    def _observe(self, data: dict[str, str]) -> None:
        now = self._clock()
        for member, beat in data.items():
            seen = self._seen.get(member)
            if seen is None or seen[0] != beat:
                self._seen[member] = (beat, now)
        for member in [m for m in self._seen if m not in data]:
            del self._seen[member]
        lease = self.settings.lease_duration.total_seconds()
        live = {m for m, (_, at) in self._seen.items() if now - at < lease}
        members = frozenset(live | {self.settings.identity})
        if members != self.members:
            self._log.info("replicas seen", members=sorted(members))
        self.members = members

    def _forgotten(self, member: str) -> bool:
        seen = self._seen.get(member)
        lease = self.settings.lease_duration.total_seconds()
        return seen is not None and self._clock() - seen[1] > FORGET_AFTER * lease

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop_event.wait()
