"""`ptc run`: informers per namespace, one reconciler task per rollout, the HTTP server.

Shutdown (SIGTERM/SIGINT): every reconciler finishes the action in flight, then the analysis
runners, informers and the server stop; the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from controller.core.config import ConfigError, load_config
from controller.core.config.model import Config, Rollout, Side
from controller.core.config.yamlread import MAX_BYTES
from controller.core.priority import GatePolicy
from controller.core.sharding import shard_of
from controller.core.state import Phase, RolloutState, StateError, read_state
from controller.shell.gate import PriorityGate
from controller.shell.kube import Kube, ObjectRef
from controller.shell.leader import LeaderElector, LeaderSettings
from controller.shell.metrics import Metrics
from controller.shell.providers.direct import DirectProvider, PodTarget
from controller.shell.providers.prometheus import PrometheusProvider
from controller.shell.providers.provider import Provider
from controller.shell.providers.routing import RoutingProvider
from controller.shell.reconciler import RolloutReconciler
from controller.shell.server import Server
from controller.shell.shard_owner import ShardOwnership
from controller.shell.shards import ShardManager, ShardSettings
from controller.shell.snapshot import Caches
from controller.tasks import cancel_and_wait

log = structlog.get_logger("ptc.daemon")

KINDS = ("pods", "deployments", "services", "endpointslices")
RouteKey = tuple[str, str, str | None]  # namespace, kind, the name an event is about
SYNC_TIMEOUT = 60.0
STOP_GRACE = 20.0
RELOAD_INTERVAL = 2.0  # seconds between looks at the config file
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
# Nothing has moved yet in these phases: a rollout removed from the config is simply let go.
_NOT_STARTED = (Phase.PENDING, Phase.PREFLIGHT)


@dataclass
class DaemonOptions:
    """How `ptc run` runs."""

    kubeconfig: str | None = None
    listen_host: str = "0.0.0.0"
    listen_port: int = 8080
    identity: str = field(default_factory=socket.gethostname)
    namespaces: tuple[str, ...] = ()  # only these (default: every namespace a rollout names)
    config_source: str = ""
    leader_elect: bool = True
    leader_namespace: str | None = None  # default: $POD_NAMESPACE, else the first rollout's
    lease_name: str = "ptc-leader"
    lease_duration: timedelta = timedelta(seconds=15)
    renew_deadline: timedelta = timedelta(seconds=10)
    retry_period: timedelta = timedelta(seconds=2)
    alerts_token_file: str | None = None  # the Alertmanager receiver's bearer token (off: None)
    shards: int = 0  # 0: one Lease for all rollouts; S: one Lease per shard (README "Sharding")


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
        self._route_table: dict[RouteKey, list[RolloutReconciler]] | None = None
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
        self._config_digest = _digest_file(options.config_source)
        self.last_reload_error: str | None = None
        # In flight but gone from the config: driven to a safe end, then let go.
        self._unconfigured: set[tuple[str, str]] = set()
        self.sharding: ShardOwnership | None = None  # with options.shards

    def _default_provider(self, config: Config) -> Provider:
        return RoutingProvider(
            lambda: PrometheusProvider(config.prometheus),
            lambda: DirectProvider(self._pod_targets),
        )

    def _pod_targets(self, rollout: Rollout, side: Side) -> list[PodTarget]:
        """The direct provider's scrape targets: the side's Ready pods, from the caches."""
        caches = self.caches.get(rollout.namespace)
        if caches is None:
            return []
        wanted = {
            Side.CANARY: {rollout.canary.deployment},
            Side.STABLE: {rollout.stable.deployment},
            Side.SERVICE: {rollout.canary.deployment, rollout.stable.deployment},
        }[side]
        targets = []
        for pod in sorted(caches.pods_of(*sorted(wanted)), key=lambda p: p.name):
            if not pod.ready or not pod.ip:
                continue
            port = rollout.preflight.port or (pod.container_ports[0] if pod.container_ports else 0)
            if port:
                targets.append(
                    PodTarget(
                        pod.name,
                        pod.ip,
                        port,
                        rollout.preflight.metrics_path,
                        {"namespace": pod.namespace},
                    )
                )
        return targets

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
        await self._controller_event(
            "Normal", "LeaderElected", f"{self.options.identity} is the active ptc controller now"
        )

    async def _controller_event(self, type_: str, reason: str, message: str) -> None:
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
            caches = Caches(
                self.kube.informer("pods", ns),
                self.kube.informer("deployments", ns),
                self.kube.informer("services", ns),
                self.kube.informer("endpointslices", ns),
            )
            self.caches[ns] = caches
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
            for kind in KINDS:
                informer = getattr(caches, kind)
                informer.subscribe(self._router(ns, kind))
                await informer.start()
        for caches in self.caches.values():
            for kind in KINDS:
                await getattr(caches, kind).wait_synced(SYNC_TIMEOUT)
        if self.sharding is not None:
            await self._start_sharded(rollouts)
        elif self.options.leader_elect:
            namespace = self._lease_namespace(rollouts)
            # Its own connection: a Lease renewal must never queue behind a burst of rollout writes.
            self._lease_kube = await Kube.connect(
                self.options.kubeconfig, instance=self.options.identity
            )
            self.elector = LeaderElector(
                self._lease_kube,
                LeaderSettings(
                    namespace=namespace,
                    name=self.options.lease_name,
                    identity=self.options.identity,
                    lease_duration=self.options.lease_duration,
                    renew_deadline=self.options.renew_deadline,
                    retry_period=self.options.retry_period,
                ),
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
            task = asyncio.create_task(self._watch_config(), name="config-reload")
            task.add_done_callback(self._reconciler_ended)
            self._tasks.append(task)

    async def _start_sharded(self, rollouts: list[Rollout]) -> None:
        assert self.kube is not None and self.sharding is not None
        self._lease_kube = await Kube.connect(
            self.options.kubeconfig, instance=self.options.identity
        )
        manager = ShardManager(
            self._lease_kube,
            ShardSettings(
                namespace=self._lease_namespace(rollouts),
                lease_name=self.options.lease_name,
                shards=self.options.shards,
                identity=self.options.identity,
                lease_duration=self.options.lease_duration,
                renew_deadline=self.options.renew_deadline,
                retry_period=self.options.retry_period,
            ),
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

    def _lease_namespace(self, rollouts: list[Rollout]) -> str:
        return (
            self.options.leader_namespace
            or os.environ.get("POD_NAMESPACE")
            or (rollouts[0].namespace if rollouts else "default")
        )

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

    # -- config hot reload ---------------------------------------------------------------

    async def _watch_config(self) -> None:
        """Look at the config file every few seconds; apply a valid change, refuse a bad one.

        A ConfigMap mount changes by swapping a symlink, so the file is re-read through its
        path each time and compared by content, not by inode or mtime. Nothing a file holds
        ends this loop: whatever goes wrong, the last good config stays and the loop goes on.
        """
        path = self.options.config_source
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=RELOAD_INTERVAL)
            if self._stop.is_set():
                break
            try:
                digest = await asyncio.to_thread(_digest_file, path)
                if digest is None or digest == self._config_digest:
                    continue
                self._config_digest = digest
                await self.reload(path)
            except Exception as exc:  # the loop must outlive any file; CancelledError passes
                log.error("config reload failed; keeping the last good config", error=repr(exc))

    async def reload(self, path: str) -> bool:
        """Load `path` and apply it; False (last good config kept) if it is refused."""
        try:
            # A big config takes a moment to parse: not on the event loop.
            loaded = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            await self._reject(path, [str(p) for p in exc.problems])
            return False
        except Exception as exc:  # load_config raises only ConfigError; this is the backstop
            log.error("config reload crashed in the loader", file=path, exc_info=exc)
            await self._reject(path, [f"{path}: cannot be checked: {exc!r}"])
            return False
        self.last_reload_error = None
        self.generation += 1
        self.metrics.config_generation.set(self.generation)
        new = {(r.namespace, r.name): r for r in loaded.config.rollouts}
        existing = {(r.spec.namespace, r.spec.name): r for r in self.reconcilers}
        for key, reconciler in existing.items():
            try:
                await self._reload_one(reconciler, new.get(key))
            except Exception as exc:  # one rollout's trouble must not stop the others'
                log.error("applying the config failed", rollout=key[1], exc_info=exc)
        for key, spec in new.items():
            if key not in existing and (
                not self.options.namespaces or spec.namespace in self.options.namespaces
            ):
                try:
                    await self._add_rollout(spec)
                except Exception as exc:
                    log.error("adding a rollout failed", rollout=spec.name, exc_info=exc)
        return True

    async def _reject(self, path: str, problems: list[str]) -> None:
        self.last_reload_error = "\n".join(problems)
        log.error(
            "config reload refused; keeping the last good config", file=path, problems=problems
        )
        with contextlib.suppress(Exception):
            await self._controller_event(
                "Warning",
                "ConfigRejected",
                f"config reload refused, last good config (generation {self.generation}) "
                f"stays in force: " + "; ".join(problems)[:900],
            )

    async def _reload_one(self, reconciler: RolloutReconciler, spec: Rollout | None) -> None:
        name, namespace = reconciler.spec.name, reconciler.spec.namespace
        if spec is None:
            await self._unconfigure(reconciler)
            return
        if (namespace, name) in self._unconfigured:
            self._unconfigured.discard((namespace, name))
            await reconciler.emit(
                "Normal", "Configured", "the rollout is in the config again: managed as usual"
            )
        outcome = reconciler.update_spec(spec, self.generation)
        if outcome == "applied":
            await reconciler.emit(
                "Normal", "ConfigApplied", f"config generation {self.generation} applied"
            )
        elif outcome == "deferred":
            await reconciler.emit(
                "Warning",
                "ConfigDeferred",
                f"config generation {self.generation} names a new stable/canary; refused "
                "while the rollout in flight runs: it applies once that one has ended "
                "(abort it to apply sooner)",
            )
        log.info("config reloaded", rollout=name, outcome=outcome, generation=self.generation)

    async def _unconfigure(self, reconciler: RolloutReconciler) -> None:
        """A rollout gone from the config: one in flight ends on its spec, else it is let go.

        Removing a rollout from the file must never abandon one that is moving traffic: it is
        driven to a safe end (completion or rollback, analysis included) on the spec it
        started with, unless a person aborts it; then it is no longer managed.
        """
        key = (reconciler.spec.namespace, reconciler.spec.name)
        state = _state_of(reconciler)
        if state is not None and state.phase not in _NOT_STARTED and not state.phase.terminal:
            if key not in self._unconfigured:
                self._unconfigured.add(key)
                log.warning(
                    "rollout removed from the config while in flight; driving it to a safe end "
                    "on the spec it started with",
                    rollout=key[1],
                    namespace=key[0],
                    phase=state.phase.value,
                    step=state.step,
                )
                await reconciler.emit(
                    "Warning",
                    "NoLongerConfigured",
                    f"rollout removed from the config while {state.phase.value} (step "
                    f"{state.step + 1}): it is driven to a safe end on the spec it started "
                    "with, analysis included; abort it to roll back now",
                )
            return
        self._retire(reconciler)

    def _retire(self, reconciler: RolloutReconciler) -> None:
        key = (reconciler.spec.namespace, reconciler.spec.name)
        log.warning(
            "rollout removed from the config; no longer managed (cluster left as it is)",
            rollout=key[1],
            namespace=key[0],
        )
        self._unconfigured.discard(key)
        reconciler.stop()
        if reconciler in self.reconcilers:
            self.reconcilers.remove(reconciler)
        self._invalidate_routes()

    async def _add_rollout(self, spec: Rollout) -> None:
        assert self.kube is not None
        if spec.namespace not in self.caches:
            caches = Caches(
                self.kube.informer("pods", spec.namespace),
                self.kube.informer("deployments", spec.namespace),
                self.kube.informer("services", spec.namespace),
                self.kube.informer("endpointslices", spec.namespace),
            )
            self.caches[spec.namespace] = caches
            for kind in KINDS:
                informer = getattr(caches, kind)
                informer.subscribe(self._router(spec.namespace, kind))
                await informer.start()
            for kind in KINDS:
                await getattr(caches, kind).wait_synced(SYNC_TIMEOUT)
        reconciler = self._reconciler(spec)
        reconciler.generation = self.generation
        self.reconcilers.append(reconciler)
        self._invalidate_routes()
        if self.sharding is not None:
            self.sharding.start_added(reconciler)
        else:
            self._start_reconciler(reconciler)
        log.info("rollout added by a config reload", rollout=spec.name, namespace=spec.namespace)

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

    def _router(self, namespace: str, kind: str) -> Callable[[str, Any], None]:
        def route(event_type: str, obj: Any) -> None:
            # The name an event is about (a pod's Deployment, a slice's Service) picks the
            # reconcilers at once: no scan of every rollout for every pod event.
            key = _route_key(kind, obj)
            for reconciler in list(self._routes.get((namespace, kind, key), ())):
                reconciler.on_event(kind, event_type, obj)
                if kind == "services" and self._unconfigured:
                    self._retire_if_ended(reconciler, obj)

        return route

    @property
    def _routes(self) -> dict[RouteKey, list[RolloutReconciler]]:
        if self._route_table is None:
            table: dict[RouteKey, list[RolloutReconciler]] = {}
            for r in self.reconcilers:
                ns, spec = r.spec.namespace, r.spec
                for kind, key in (
                    ("deployments", spec.stable.deployment),
                    ("deployments", spec.canary.deployment),
                    ("pods", spec.stable.deployment),
                    ("pods", spec.canary.deployment),
                    ("services", spec.service),
                    ("endpointslices", spec.service),
                ):
                    table.setdefault((ns, kind, key), []).append(r)
            self._route_table = table
        return self._route_table

    def _retire_if_ended(self, reconciler: RolloutReconciler, svc: Any) -> None:
        """An unconfigured rollout is let go once its Service's state shows it has ended."""
        if (reconciler.spec.namespace, reconciler.spec.name) not in self._unconfigured:
            return
        try:
            state = read_state(svc.annotations)
        except StateError:
            return
        if state is None or state.phase.terminal:
            self._retire(reconciler)

    def _invalidate_routes(self) -> None:
        """A reconciler came, went or changed its spec: rebuild the routes on the next event."""
        self._route_table = None

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


def _digest_file(path: str) -> str | None:
    """sha256 of the file's size and content; None when there is no file or it cannot be read.

    Reads at most one byte past the loader's limit: a file larger than that is refused
    whatever follows, and a huge file or a device must not be read whole.
    """
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read(MAX_BYTES + 1))
            digest.update(str(os.fstat(handle.fileno()).st_size).encode())
            return digest.hexdigest()
    except OSError:
        return None


def _state_of(reconciler: RolloutReconciler) -> RolloutState | None:
    svc = reconciler.service()
    if svc is None:
        return None
    try:
        return read_state(svc.annotations)
    except StateError:
        return None


def _route_key(kind: str, obj: Any) -> str | None:
    """The name a watch event is routed by."""
    if kind == "pods":
        return str(obj.deployment) if obj.deployment else None
    if kind == "endpointslices":
        return str(obj.service)
    return str(obj.name)
