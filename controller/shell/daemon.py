"""`ptc run`: informers per namespace, one reconciler task per rollout, the HTTP server.

Shutdown (SIGTERM/SIGINT): every reconciler finishes the action in flight, then the analysis
runners, informers and the server stop; the process exits 0.

Beside it: `options` (what `ptc run` is told), `reload` (config hot reload), `event_routes`
(which reconcilers an informer event wakes), `snapshot` (the caches a reconciler reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from controller.core.config.model import Config, Rollout, Side
from controller.core.priority import GatePolicy
from controller.core.sharding import shard_of
from controller.shell.event_routes import EventRoutes
from controller.shell.gate import PriorityGate
from controller.shell.kube import Kube, ObjectRef
from controller.shell.leader import LeaderElector
from controller.shell.metrics import Metrics
from controller.shell.options import DaemonOptions
from controller.shell.providers.direct import DirectProvider
from controller.shell.providers.prometheus import PrometheusProvider
from controller.shell.providers.provider import Provider
from controller.shell.providers.routing import RoutingProvider
from controller.shell.providers.scrape import PodTarget
from controller.shell.reconciler import RolloutReconciler
from controller.shell.reload import ConfigReloader
from controller.shell.server import Server
from controller.shell.shard_owner import ShardOwnership
from controller.shell.shards import ShardManager
from controller.shell.snapshot import Caches, pod_targets
from controller.tasks import cancel_and_wait

log = structlog.get_logger("ptc.daemon")

KINDS = ("pods", "deployments", "services", "endpointslices")
SYNC_TIMEOUT = 60.0
STOP_GRACE = 20.0
# Evaluations in flight at once. Beyond that they only queue deeper (the Prometheus client's
# request limit), where a breaching rollout's evaluation would wait behind every routine one;
# at the gate it goes first and finds one of 16 slots kept free. Sized well above what one
# Prometheus answers concurrently, so the budget orders work without capping throughput (at 500
# rollouts every 10 s and 0.5 s per evaluation, 25 are in flight).
EVALUATIONS_IN_FLIGHT = 64
ROUTINE_EVALUATIONS = 48
# Reconciles in progress at once (each mostly waits on its writes): routine ones beyond 48 wait
# cheaply, so a rollout with a command or a rollback to execute starts at once.
RECONCILES_IN_FLIGHT = 64
ROUTINE_RECONCILES = 48


class Controller:
    """Everything `ptc run` starts; `run()` until `stop()`."""

    def __init__(
        self,
        config: Config,
        options: DaemonOptions,
        *,
        provider_factory: Callable[[Config], Provider | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.options = options
        self.clock = clock
        self.metrics = Metrics()
        self.elector: LeaderElector | None = None
        self._lease_kube: Kube | None = None
        self.metrics.config_generation.set(1)
        self._provider_factory = provider_factory or self._default_provider
        self.provider: Provider | None = None
        self.kube: Kube | None = None
        self.reconcilers: list[RolloutReconciler] = []
        # Evaluations in flight at once, breaching ones first (see controller.core.priority).
        self.evaluations = PriorityGate(GatePolicy(EVALUATIONS_IN_FLIGHT, ROUTINE_EVALUATIONS))
        self.reconciles = PriorityGate(GatePolicy(RECONCILES_IN_FLIGHT, ROUTINE_RECONCILES))
        self.caches: dict[str, Caches] = {}
        self.server = Server(self, options.listen_host, options.listen_port)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = False
        self.generation = 1
        self.last_reload_error: str | None = None
        self.reloader = ConfigReloader(self)
        self._routes = EventRoutes(lambda: self.reconcilers, self.reloader.on_service_event)
        self.sharding: ShardOwnership | None = None  # with options.shards

    def _default_provider(self, config: Config) -> Provider:
        return RoutingProvider(
            lambda: PrometheusProvider(config.prometheus),
            lambda: DirectProvider(self._pod_targets),
        )

    def _pod_targets(self, rollout: Rollout, side: Side) -> list[PodTarget]:
        """The direct provider's scrape targets: the side's Ready pods, from the caches."""
        return pod_targets(self.caches.get(rollout.namespace), rollout, side)

    def rollouts(self) -> list[dict[str, Any]]:
        """Status of every rollout (for /api/v1/rollouts)."""
        return [r.status() for r in self.reconcilers]

    def shards_status(self) -> dict[str, Any] | None:
        """Sharded: each shard's Lease and holder as this replica sees them (None otherwise)."""
        if self.sharding is None or self.sharding.manager is None:
            return None
        return self.sharding.document(self.options.identity)

    def is_leader(self) -> bool:
        """Whether this instance may write now (always, without leader election).

        Sharded: whether it leads any shard (each rollout's writes are fenced by its own).
        """
        if self.sharding is not None and self.sharding.manager is not None:
            return bool(self.sharding.manager.led())
        return self.elector is None or self.elector.is_leader()

    def _on_leadership(self, leading: bool, holder: str | None) -> None:
        self.metrics.leader.set(1 if leading else 0)
        log.info(
            "leadership changed", leading=leading, holder=holder, identity=self.options.identity
        )
        for reconciler in self.reconcilers:
            reconciler.wake.set()
        if leading:
            task = asyncio.create_task(self._announce_leadership(), name="leader-events")
            self._tasks.append(task)

    async def _announce_leadership(self) -> None:
        await self.controller_event(
            "Normal", "LeaderElected", f"{self.options.identity} is the active ptc controller now"
        )

    async def controller_event(self, type_: str, reason: str, message: str) -> None:
        """One Event about the controller itself, on its leader-election Lease.

        Not one per rollout: a reload or a leadership change at 500 rollouts would be 500
        Events. Without leader election there is no Lease: each rollout's Service gets it.
        """
        if self.sharding is not None and self.sharding.manager is not None and self.kube:
            # sharded: each replica on the first shard's Lease (every replica reloads on its own)
            lease = self.sharding.manager.settings.lease(0)
            ref = ObjectRef(
                "Lease", lease.namespace, lease.name, api_version="coordination.k8s.io/v1"
            )
            await self.kube.emit_event(lease.namespace, ref, type_, reason, message)
            return
        if self.elector is None or self.kube is None:
            for reconciler in list(self.reconcilers):
                with contextlib.suppress(Exception):
                    await reconciler.emit(type_, reason, message)
            return
        lease = self.elector.settings
        ref = ObjectRef("Lease", lease.namespace, lease.name, api_version="coordination.k8s.io/v1")
        await self.kube.emit_event(lease.namespace, ref, type_, reason, message)

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready once every informer has synced; the reasons when not."""
        reasons = []
        if self.kube is None:
            reasons.append("not connected to the Kubernetes API")
        for ns, caches in self.caches.items():
            for kind in KINDS:
                if not getattr(caches, kind).synced:
                    reasons.append(f"{kind} in {ns} not synced")
        return (not reasons and self.ready), reasons

    def stop(self) -> None:
        """Begin a clean shutdown."""
        self._stop.set()

    async def run(self) -> None:
        """Connect, sync, reconcile until stopped, then shut down cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        await self.server.start()
        try:
            await self._start()
            await self._stop.wait()
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    async def _start(self) -> None:
        self.kube = await Kube.connect(self.options.kubeconfig, instance=self.options.identity)
        self.provider = self._provider_factory(self.config)
        rollouts = [
            r
            for r in self.config.rollouts
            if not self.options.namespaces or r.namespace in self.options.namespaces
        ]
        for ns in sorted({r.namespace for r in rollouts}):
            self.caches[ns] = self._new_caches(ns)
        if self.options.leader_elect and self.options.shards > 0:
            self.sharding = ShardOwnership(
                self.kube,
                self.options.shards,
                self.metrics,
                self.options.identity,
                lambda: self.reconcilers,
                self._fresh_reconciler,
                self._reconciler_ended,
            )
        for spec in rollouts:
            self.reconcilers.append(self._reconciler(spec))
        self._invalidate_routes()
        for ns, caches in self.caches.items():
            await self._start_informers(ns, caches)
        for caches in self.caches.values():
            await _wait_synced(caches)
        if self.sharding is not None:
            await self._start_sharded(rollouts)
        elif self.options.leader_elect:
            namespace = self.options.lease_namespace(rollouts)
            # Its own connection: a Lease renewal must never queue behind a burst of rollout writes.
            self._lease_kube = await Kube.connect(
                self.options.kubeconfig, instance=self.options.identity
            )
            self.elector = LeaderElector(
                self._lease_kube,
                self.options.leader_settings(namespace),
                on_change=self._on_leadership,
            )
            # Every rollout write is sent only while leadership lasts, bounded by what is left.
            self.kube.fence = self.elector.time_left
            elector_task = asyncio.create_task(self.elector.run(), name="leader-election")
            elector_task.add_done_callback(self._reconciler_ended)
            self._tasks.append(elector_task)
        else:
            self.metrics.leader.set(1)
        self.ready = True
        log.info(
            "controller started",
            rollouts=[r.spec.name for r in self.reconcilers],
            namespaces=sorted(self.caches),
            identity=self.options.identity,
            config=self.options.config_source,
        )
        if self.sharding is None:  # sharded: each shard's reconcilers start when it is led
            for reconciler in self.reconcilers:
                self._start_reconciler(reconciler)
        if self.options.config_source:
            task = asyncio.create_task(self.reloader.watch(self._stop), name="config-reload")
            task.add_done_callback(self._reconciler_ended)
            self._tasks.append(task)

    async def _start_sharded(self, rollouts: list[Rollout]) -> None:
        assert self.kube is not None and self.sharding is not None
        self._lease_kube = await Kube.connect(
            self.options.kubeconfig, instance=self.options.identity
        )
        manager = ShardManager(
            self._lease_kube,
            self.options.shard_settings(self.options.lease_namespace(rollouts)),
            on_change=self.sharding.on_change,
            before_handoff=self.sharding.before_handoff,
        )
        self.sharding.manager = manager
        # Writes outside a shard's reconcilers are refused: each rollout's go through its
        # shard's fenced view (ShardOwnership.kube_for).
        self.kube.fence = lambda: None
        task = asyncio.create_task(manager.run(), name="shard-election")
        task.add_done_callback(self._reconciler_ended)
        self._tasks.append(task)

    def _fresh_reconciler(self, old: RolloutReconciler) -> RolloutReconciler:
        """A new reconciler for a shard just gained; the old one's config is carried over."""
        new = self._reconciler(old.spec)
        new.generation = old.generation
        pending = old.pending_spec
        if pending is not None:
            new.update_spec(*pending)
        return new

    def _start_reconciler(self, reconciler: RolloutReconciler) -> None:
        task = asyncio.create_task(reconciler.run(), name=f"reconcile:{reconciler.spec.name}")
        task.add_done_callback(self._reconciler_ended)
        self._tasks.append(task)

    # -- what a config reload changes ----------------------------------------------------

    async def reload(self, path: str) -> bool:
        """Load `path` and apply it; False (last good config kept) if it is refused."""
        return await self.reloader.reload(path)

    async def add_rollout(self, spec: Rollout) -> None:
        """A rollout new in the config: watch its namespace if need be, start its reconciler."""
        assert self.kube is not None
        if spec.namespace not in self.caches:
            caches = self._new_caches(spec.namespace)
            self.caches[spec.namespace] = caches
            await self._start_informers(spec.namespace, caches)
            await _wait_synced(caches)
        reconciler = self._reconciler(spec)
        reconciler.generation = self.generation
        self.reconcilers.append(reconciler)
        self._invalidate_routes()
        if self.sharding is not None:
            self.sharding.start_added(reconciler)
        else:
            self._start_reconciler(reconciler)
        log.info("rollout added by a config reload", rollout=spec.name, namespace=spec.namespace)

    def remove_reconciler(self, reconciler: RolloutReconciler) -> None:
        """Stop managing a rollout (the cluster is left as it is)."""
        reconciler.stop()
        if reconciler in self.reconcilers:
            self.reconcilers.remove(reconciler)
        self._invalidate_routes()

    def _new_caches(self, namespace: str) -> Caches:
        assert self.kube is not None
        return Caches(
            self.kube.informer("pods", namespace),
            self.kube.informer("deployments", namespace),
            self.kube.informer("services", namespace),
            self.kube.informer("endpointslices", namespace),
        )

    async def _start_informers(self, namespace: str, caches: Caches) -> None:
        for kind in KINDS:
            informer = getattr(caches, kind)
            informer.subscribe(self._routes.handler(namespace, kind))
            await informer.start()

    def _reconciler(self, spec: Rollout) -> RolloutReconciler:
        assert self.kube is not None
        self._invalidate_routes()
        kube, may_write = self.kube, self.is_leader
        if self.sharding is not None:
            shard = shard_of(spec.namespace, spec.name, self.options.shards)
            kube, may_write = self.sharding.kube_for(shard), self.sharding.may_write(shard)
        reconciler = RolloutReconciler(
            spec,
            kube,
            self.caches[spec.namespace],
            self.provider,
            self.metrics,
            identity=self.options.identity,
            clock=self.clock,
            may_write=may_write,
            on_spec_change=self._invalidate_routes,
            evaluation_gate=self.evaluations,
            reconcile_gate=self.reconciles,
        )
        return reconciler

    def _invalidate_routes(self) -> None:
        """A reconciler came, went or changed its spec: rebuild the routes on the next event."""
        self._routes.invalidate()

    def _reconciler_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        if exc is not None:
            # A reconciler must never die silently: say why, then stop the process so the
            # Deployment restarts it (the state in the cluster lets the new one resume).
            log.error(
                "reconciler crashed; stopping", task=task.get_name(), error=repr(exc), exc_info=exc
            )
            self.stop()

    async def _shutdown(self) -> None:
        self.ready = False
        for reconciler in self.reconcilers:
            reconciler.stop()
        reconciler_tasks = [t for t in self._tasks if t.get_name().startswith("reconcile:")]
        if reconciler_tasks:
            # Each finishes the action in flight; only then is the lease given up.
            await asyncio.wait(reconciler_tasks, timeout=STOP_GRACE)
        if self.sharding is not None:
            await self.sharding.stop_all()
            if self.sharding.manager is not None:
                with contextlib.suppress(Exception):
                    await self.sharding.manager.release_all()
        if self.elector is not None:
            with contextlib.suppress(Exception):
                await self.elector.release()
            self.elector.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE)
            await cancel_and_wait(*pending, raise_failure=False)
        if self.provider is not None:
            await self.provider.close()
        if self.kube is not None:
            await self.kube.close()
        if self._lease_kube is not None:
            await self._lease_kube.close()
        await self.server.stop()
        log.info("controller stopped")


async def _wait_synced(caches: Caches) -> None:
    for kind in KINDS:
        await getattr(caches, kind).wait_synced(SYNC_TIMEOUT)
