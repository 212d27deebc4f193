"""Which reconcilers run here when sharding is on: exactly those of the shards this replica leads.

Gaining a shard starts a fresh reconciler for each of its rollouts, which resumes from the state
on the Service exactly as after a failover. Losing one stops exactly those reconcilers: their
writes are already refused (each rollout's writes are fenced by its own shard's Lease), and each
finishes the action in flight. Start and stop of one shard never overlap, so a rollout never has
two reconcilers in one process. Reconcilers of shards led elsewhere stay as stopped objects:
``/api/v1/rollouts`` and config reloads see every rollout, and the state's ``writer`` names the
replica that drives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Gauge

from controller.core.sharding import shard_of
from controller.shell.kube import Kube, ObjectRef
from controller.shell.shards import ShardManager
from controller.tasks import cancel_and_wait

if TYPE_CHECKING:
    from controller.shell.metrics import Metrics
    from controller.shell.reconciler import RolloutReconciler

log = structlog.get_logger("ptc.shards")

STOP_GRACE = 10.0  # seconds a losing shard's reconcilers get to finish the action in flight


class ShardOwnership:
    """Starts and stops reconcilers as shards come and go (see the module docstring)."""

    def __init__(
        self,
        kube: Kube,
        shards: int,
        metrics: Metrics,
        identity: str,
        reconcilers: Callable[[], list[RolloutReconciler]],
        fresh: Callable[[RolloutReconciler], RolloutReconciler],
        on_task_done: Callable[[asyncio.Task[None]], None],
    ) -> None:
        self._on_task_done = on_task_done
        self._kube = kube
        self._metrics = metrics
        self.shards = shards
        self._identity = identity
        self._reconcilers = reconcilers
        self._fresh = fresh
        self.manager: ShardManager | None = None
        self._views: dict[int, Kube] = {}
        self._running: dict[int, list[tuple[RolloutReconciler, asyncio.Task[None]]]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._leading: dict[int, bool] = {}
        self._closing = False  # shutting down: a shard gained now starts nothing
        self._background: set[asyncio.Task[None]] = set()
        self.led = Gauge(
            "ptc_shards_led", "Shards this replica leads now", registry=metrics.registry
        )
        self.shard_leader = Gauge(
            "ptc_shard_leader",
            "1 for each shard this replica leads, 0 for the others",
            ["shard"],
            registry=metrics.registry,
        )

    def shard(self, reconciler: RolloutReconciler) -> int:
        """The shard of a rollout."""
        return shard_of(reconciler.spec.namespace, reconciler.spec.name, self.shards)

    def kube_for(self, shard: int) -> Kube:
        """The adapter for a shard's rollouts: its writes fenced by that shard's Lease."""
        view = self._views.get(shard)
        if view is None:
            view = self._views[shard] = self._kube.fenced_by(lambda: self._time_left(shard))
        return view

    def may_write(self, shard: int) -> Callable[[], bool]:
        """Whether a shard's reconcilers may act now: while we lead it."""
        return lambda: self.manager is not None and self.manager.is_leader(shard)

    def _time_left(self, shard: int) -> float | None:
        return self.manager.time_left(shard) if self.manager is not None else None

    def is_running(self, reconciler: RolloutReconciler) -> bool:
        return any(r is reconciler for r, _ in self._running.get(self.shard(reconciler), []))

    def document(self, identity: str) -> dict[str, Any]:
        """Shards, their Leases and holders, for /api/v1/rollouts and `ptc status --controller`."""
        manager = self.manager
        assert manager is not None
        counts = [0] * self.shards
        for r in self._reconcilers():
            counts[self.shard(r)] += 1
        return {
            "identity": identity,
            "members": sorted(manager.members),
            "fairShare": manager.plan.fair_share if manager.plan is not None else None,
            "shards": [
                {
                    "shard": i,
                    "lease": manager.settings.lease(i).name,
                    "holder": holder,
                    "leading": manager.is_leader(i),
                    "rollouts": counts[i],
                }
                for i, holder in enumerate(manager.holders())
            ],
        }

    # --- leadership changes ------------------------------------------------------------------

    def on_change(self, shard: int, leading: bool, holder: str | None) -> None:
        """From a shard's elector (must not block): follow the change in the background."""
        if self._leading.get(shard, False) == leading:
            return  # only the observed holder changed: nothing to start or stop here
        self._leading[shard] = leading
        manager = self.manager
        if manager is not None:
            led = len(manager.led())
            self.led.set(led)
            self._metrics.leader.set(1 if led else 0)  # ptc_leader: leads at least one shard
        self.shard_leader.labels(str(shard)).set(1 if leading else 0)
        log.info(
            "shard leadership changed",
            shard=shard,
            leading=leading,
            holder=holder,
            identity=self._identity,
        )
        self._spawn(self.sync(shard), f"shard-sync:{shard}")
        if leading:
            self._spawn(self._announce(shard), f"shard-event:{shard}")

    async def sync(self, shard: int) -> None:
        """Run the shard's reconcilers if we lead it, else stop them (one change at a time)."""
        async with self._lock(shard):
            manager = self.manager
            if manager is not None and manager.is_leader(shard) and not self._closing:
                if shard not in self._running:
                    self._start(shard)
            else:
                await self._stop(shard)

    async def before_handoff(self, shard: int) -> None:
        """Stop the shard's reconcilers while we still hold its Lease, then it is released."""
        async with self._lock(shard):
            await self._stop(shard)

    def start_added(self, reconciler: RolloutReconciler) -> None:
        """A rollout added by a reload: run it now if we lead its shard."""
        shard = self.shard(reconciler)
        if shard in self._running and not self._closing:
            self._running[shard].append((reconciler, self._task(reconciler)))

    async def stop_all(self) -> None:
        """Stop every running reconciler and start none again (shutdown)."""
        self._closing = True

        async def stop(shard: int) -> None:
            async with self._lock(shard):
                await self._stop(shard)

        await asyncio.gather(*(stop(shard) for shard in list(self._running)))
        await cancel_and_wait(*self._background, raise_failure=False)

    # --- inside ------------------------------------------------------------------------------

    def _start(self, shard: int) -> None:
        started = []
        reconcilers = self._reconcilers()
        for index, old in enumerate(reconcilers):
            if self.shard(old) != shard:
                continue
            # A fresh one, as after a failover: nothing from a previous term is trusted.
            new = self._fresh(old)
            reconcilers[index] = new
            started.append((new, self._task(new)))
        self._running[shard] = started
        log.info(
            "shard started",
            shard=shard,
            identity=self._identity,
            rollouts=[r.spec.name for r, _ in started],
        )

    async def _stop(self, shard: int) -> None:
        running = self._running.pop(shard, [])
        if not running:
            return
        for reconciler, _ in running:
            reconciler.stop()
        tasks = [t for _, t in running]
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
        await cancel_and_wait(*pending, raise_failure=False)
        log.info(
            "shard stopped",
            shard=shard,
            identity=self._identity,
            rollouts=[r.spec.name for r, _ in running],
        )

    def _task(self, reconciler: RolloutReconciler) -> asyncio.Task[None]:
        task = asyncio.create_task(reconciler.run(), name=f"reconcile:{reconciler.spec.name}")
        task.add_done_callback(self._on_task_done)  # a crash stops the process, as unsharded
        return task

    def _lock(self, shard: int) -> asyncio.Lock:
        return self._locks.setdefault(shard, asyncio.Lock())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shard change failed", task=task.get_name(), exc_info=task.exception())

    async def _announce(self, shard: int) -> None:
        """One Event per leadership change, on the shard's Lease."""
        manager = self.manager
        if manager is None:
            return
        lease = manager.settings.lease(shard)
        ref = ObjectRef("Lease", lease.namespace, lease.name, api_version="coordination.k8s.io/v1")
        count = sum(1 for r in self._reconcilers() if self.shard(r) == shard)
        try:
            await self._kube.emit_event(
                lease.namespace,
                ref,
                "Normal",
                "LeaderElected",
                f"{self._identity} leads shard {shard} ({count} rollouts) now",
            )
        except Exception as exc:  # an Event is a record, never a reason to stop
            log.warning("shard event failed", shard=shard, error=repr(exc))
