"""Lease-based leader election with fencing by time (DESIGN.md §4, invariant 5).

One ``coordination.k8s.io/v1`` Lease names the active controller. The protocol follows
client-go's ``leaderelection`` package:

- A candidate takes the Lease when it does not exist (create), when it already names us, when
  its holder is empty (released), or when it has *expired*: the record has not changed for
  ``max(lease_duration, spec.leaseDurationSeconds)`` measured on **our own monotonic clock from
  the moment we first saw that version of the record** (client-go's ``observedTime``). The
  remote ``renewTime`` is never compared with our clock, so clock skew between machines does
  not matter; only clock *rate* differences do, and ``lease_duration - renew_deadline`` is the
  margin for them.
- Every write carries the resourceVersion it was based on; a Conflict means someone else wrote
  first and we stay (or become) a follower. ``leaseTransitions`` grows when the holder changes.
- The leader renews every ``retry_period``. It is leader only while
  ``now < start of its last successful write + renew_deadline`` (:meth:`LeaderElector.is_leader`
  reads the clock on every call). The write's *start* is used because the server may have
  applied it at any instant before the answer arrived, and a follower's observation of that
  write can come no earlier. A follower therefore takes over no sooner than
  ``write start + lease_duration``, which is ``lease_duration - renew_deadline`` after the old
  leader stopped considering itself leader — also when the old leader was paused (SIGSTOP),
  partitioned, or its loop starved: on resume, its clock is already past the deadline.

Every API call is bounded: a leader's by the time left until its deadline, a follower's by
``renew_deadline``. :meth:`LeaderElector.stop` also cuts an in-flight call short. The Lease
calls it makes and its settings are in :mod:`controller.shell.lease`.

Typical use in the daemon::

    elector = LeaderElector(kube, LeaderSettings(namespace="ptc", identity=pod_name))
    task = asyncio.create_task(elector.run(), name="ptc-leader")
    await elector.wait_leader()
    ...                                   # act only while elector.is_leader()
    await elector.release()               # clean shutdown: a standby takes over at once
    await task
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from controller.shell.kube import Conflict, KubeError, LeaseInfo, NotFound
from controller.shell.lease import RELEASED_DURATION_SECONDS, LeaderSettings, LeaseApi

log = structlog.get_logger(__name__)

# Followers wait retry_period · [1, 1 + JITTER) between attempts, so candidates that started
# together do not keep colliding.
JITTER = 0.2


class ElectorStopped(RuntimeError):
    """The elector was stopped, so leadership will not come (raised by ``wait_leader``)."""


OnChange = Callable[[bool, str | None], None]


class LeaderElector:
    """Contends for a Lease until stopped; see the module docstring for the protocol.

    ``clock`` is a monotonic clock in seconds (injectable, so tests can simulate a pause);
    ``wall_clock`` gives the ``acquireTime``/``renewTime`` written for humans and tools.
    ``on_change(leading, holder)`` is called whenever leadership or the observed holder
    changes; it must not block (it runs in the election loop) and its errors are logged.
    ``may_acquire()`` (sharding) is asked before taking a Lease someone else held or nobody
    holds; a leader renews regardless, and hands a Lease off only by :meth:`release`.
    """

    def __init__(
        self,
        kube: LeaseApi,
        settings: LeaderSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: OnChange | None = None,
        may_acquire: Callable[[], bool] | None = None,
    ) -> None:
        self._api = kube
        self._may_acquire = may_acquire
        self.settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_change = on_change
        self._log = log.bind(
            identity=settings.identity, lease=f"{settings.namespace}/{settings.name}"
        )
        self._renew_deadline = settings.renew_deadline.total_seconds()
        self._retry_period = settings.retry_period.total_seconds()
        # what we last saw of the Lease, and when (our clock) that version first appeared
        self._record: LeaseInfo | None = None
        self._observed_at = 0.0
        # leadership as the loop knows it; is_leader() also checks the deadline
        self._leading = False
        self._deadline: float | None = None
        self._published: tuple[bool, str | None] = (False, None)
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._changed = asyncio.Event()
        self._running = False
        self._done = asyncio.Event()
        self._done.set()
        self._call_scope: asyncio.Timeout | None = None

    # --- what the daemon asks ----------------------------------------------------------------

    @property
    def identity(self) -> str:
        """Our identity, as written into ``spec.holderIdentity``."""
        return self.settings.identity

    def is_leader(self) -> bool:
        """Whether we may act as leader *now*: leading and before the renew deadline.

        Reads the clock on each call, so a process resumed after a pause gets False at once,
        before any network call.
        """
        deadline = self._deadline
        return (
            self._leading
            and not self._stopping
            and deadline is not None
            and self._clock() < deadline
        )

    @property
    def deadline(self) -> float | None:
        """When (on ``clock``) leadership ends unless renewed; None when not leading.

        Lets the daemon bound an action: do not start what cannot finish before it.
        """
        return self._deadline if self._leading else None

    def time_left(self) -> float | None:
        """Seconds we may still act as leader (None when not leading): the writes' fence."""
        if not self.is_leader() or self._deadline is None:
            return None
        return self._deadline - self._clock()

    @property
    def holder(self) -> str | None:
        """The holder named by the Lease when we last saw it (None: nobody, or not yet read)."""
        return self._record.holder if self._record is not None else None

    @property
    def live_holder(self) -> str | None:
        """The holder, unless its time is up by our clock (then nobody: the Lease is free)."""
        record = self._record
        if record is None or record.holder is None:
            return None
        if record.holder != self.identity and self._expired(record):
            return None
        return record.holder

    @property
    def transitions(self) -> int:
        """The Lease's ``leaseTransitions`` when we last saw it (0 before the first read)."""
        return self._record.transitions if self._record is not None else 0

    async def wait_leader(self) -> None:
        """Return once we are leader; raise :class:`ElectorStopped` if stopped first."""
        while not self.is_leader():
            if self._stopping:
                raise ElectorStopped(f"leader election for {self.identity} was stopped")
            changed = self._changed
            await changed.wait()

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Contend until :meth:`stop`: acquire (follower) or renew (leader) each retry period.

        Leadership, if held, ends before this returns; the Lease is left as it is.
        """
        if self._running:
            raise RuntimeError("LeaderElector.run() is already running")
        self._running = True
        self._done.clear()
        self._log.info("leader election started", holder=self.holder)
        try:
            while not self._stopping:
                await self._attempt()
                if self._stopping:
                    break
                await self._pause(self._next_delay())
        finally:
            self._running = False
            self._step_down("election stopped")
            self._done.set()

    def stop(self) -> None:
        """Stop contending: no longer leader from this instant; the Lease is left to expire.

        Cuts short an API call in flight; :meth:`run` returns soon after. Call from the
        event loop's thread.
        """
        if not self._stopping:
            self._stopping = True
            self._stop_event.set()
            scope = self._call_scope
            if scope is not None and not scope.expired():
                scope.reschedule(0)  # the past: time out now
        self._step_down("election stopped")
        self._signal_change()

    async def release(self) -> bool:
        """Stop, and if the Lease still names us, clear its holder so a standby takes it at once.

        Leadership ends (``is_leader()`` False, ``on_change(False, …)``) *before* the Lease is
        written, so we never act while another may hold it. Returns whether the Lease was
        released; on failure it simply expires after ``lease_duration``.
        """
        self.stop()
        await self._done.wait()
        record = self._record
        if record is None or record.holder != self.identity:
            return False
        try:
            async with asyncio.timeout(self._renew_deadline):
                try:
                    released = await self._write_released(record)
                except Conflict:
                    # an earlier write of ours may have landed after all: release that one
                    current = await self._api.get_lease(self.settings.namespace, self.settings.name)
                    if current.holder != self.identity:
                        self._remember(current)
                        return False
                    released = await self._write_released(current)
        except (KubeError, TimeoutError) as e:
            self._log.warning("leadership release failed", error=str(e) or type(e).__name__)
            return False
        self._remember(released)
        self._log.info("leadership released", holder=None, transitions=released.transitions)
        self._publish()
        return True

    # --- the loop ----------------------------------------------------------------------------

    async def _attempt(self) -> None:
        """One try to acquire or renew, bounded in time; failures are logged, never raised."""
        if self._leading and not self.is_leader():
            self._step_down("renew deadline passed")
        limit = self._renew_deadline
        if self._leading and self._deadline is not None:
            limit = self._deadline - self._clock()
        try:
            async with asyncio.timeout(limit) as scope:
                self._call_scope = scope
                await self._try_acquire_or_renew()
        except TimeoutError:
            if not self._stopping:
                self._log.warning(
                    "leader election attempt timed out", leading=self._leading, limit=limit
                )
        except Conflict as e:
            self._log.debug(
                "leader election attempt conflicted", leading=self._leading, error=str(e)
            )
        except KubeError as e:
            self._log.warning("leader election attempt failed", leading=self._leading, error=str(e))
        finally:
            self._call_scope = None
        if self._leading and not self.is_leader():
            self._step_down("renew deadline passed")
        self._publish()  # a new holder seen as follower

    async def _try_acquire_or_renew(self) -> None:
        """client-go's tryAcquireOrRenew: a leader's fast path, else read, judge, write."""
        if self._leading and self._record is not None:
            try:
                await self._write_ours(self._record)
                return
            except (Conflict, NotFound) as e:
                self._log.info("lease renewal stale", detail="re-reading the lease", error=str(e))
        ns, name = self.settings.namespace, self.settings.name
        try:
            current = await self._api.get_lease(ns, name)
        except NotFound:
            last = self._record
            if (
                last is not None
                and last.holder not in (None, self.identity)
                and not self._expired(last)
            ):
                # deleted while someone held it: that holder may still act until its term,
                # as we last saw it, runs out
                return
            if not self._acquiring():
                return
            start, now = self._clock(), self._wall_clock()
            created = await self._api.create_lease(
                ns,
                name,
                holder=self.identity,
                duration_seconds=self.settings.lease_duration_seconds,
                acquire_time=now,
                renew_time=now,
                transitions=0,
            )
            self._won(created, start)
            return
        self._remember(current)
        if current.holder != self.identity:
            if self._leading:
                self._step_down(f"lease now held by {current.holder or 'nobody'}")
            if current.holder and not self._expired(current):
                return
            if not self._acquiring():
                return
        await self._write_ours(current)

    def _acquiring(self) -> bool:
        """Whether we may take a Lease that is not ours (always, unless sharding says no)."""
        return self._may_acquire is None or self._may_acquire()

    async def _write_ours(self, base: LeaseInfo) -> None:
        """Write ``base`` as held by us, renewed now (precondition: its resourceVersion)."""
        ours = base.holder == self.identity
        start, now = self._clock(), self._wall_clock()
        lease = await self._api.update_lease(
            self.settings.namespace,
            self.settings.name,
            resource_version=base.resource_version,
            holder=self.identity,
            duration_seconds=self.settings.lease_duration_seconds,
            acquire_time=(base.acquire_time or now) if ours else now,
            renew_time=now,
            transitions=base.transitions if ours else base.transitions + 1,
        )
        self._won(lease, start)

    async def _write_released(self, base: LeaseInfo) -> LeaseInfo:
        now = self._wall_clock()
        return await self._api.update_lease(
            self.settings.namespace,
            self.settings.name,
            resource_version=base.resource_version,
            holder=None,
            duration_seconds=RELEASED_DURATION_SECONDS,
            acquire_time=now,
            renew_time=now,
            transitions=base.transitions,
        )

    def _won(self, lease: LeaseInfo, start: float) -> None:
        """Our write (sent at ``start``) landed: leader until ``start + renew_deadline``."""
        self._remember(lease)
        if self._stopping:
            return
        self._deadline = start + self._renew_deadline
        self._leading = True
        if not self.is_leader():  # the clock jumped while we waited (a pause): not ours to use
            self._step_down("renew deadline passed")
        self._publish()

    def _remember(self, lease: LeaseInfo) -> None:
        """Remember the record; a new version restarts its expiry on our clock."""
        if self._record is None or lease.resource_version != self._record.resource_version:
            self._observed_at = self._clock()
        self._record = lease

    def _expired(self, lease: LeaseInfo) -> bool:
        """Whether the holder's time is up: unchanged for the longer of both lease durations."""
        wait = max(self.settings.lease_duration.total_seconds(), lease.duration_seconds or 0)
        return self._clock() >= self._observed_at + wait

    def _step_down(self, reason: str) -> None:
        if not self._leading:
            return
        self._leading = False
        self._deadline = None
        self._publish(reason)

    def _publish(self, reason: str | None = None) -> None:
        """Log and report a change of (leading, holder) once; wake ``wait_leader``."""
        state = (self._leading, self.holder)
        if state == self._published:
            return
        was_leading, _ = self._published
        self._published = state
        fields = {"holder": self.holder, "transitions": self.transitions}
        if state[0] and not was_leading:
            self._log.info("leadership acquired", **fields)
        elif was_leading and not state[0]:
            level = self._log.info if self._stopping else self._log.warning
            level("leadership lost", reason=reason, **fields)
        else:
            self._log.info("leader observed", **fields)
        if self._on_change is not None:
            try:
                self._on_change(*state)
            except Exception:
                self._log.exception("leadership change callback failed")
        self._signal_change()

    def _signal_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _next_delay(self) -> float:
        if self._leading and self._deadline is not None:
            # renew on schedule, but wake at the deadline to step down on time
            return max(0.0, min(self._retry_period, self._deadline - self._clock()))
        return self._retry_period * (1 + JITTER * random.random())

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop_event.wait()
